"""DICOM SEG: the label map as a BINARY Segmentation object beside its source series.

The SEG is built with highdicom. Every frame carries its own plane position, and the
shared groups carry the plane orientation and pixel measures, all taken from the label
Volume's affine (converted to LPS here, once). That one code path covers both cases:

* a plain series, where the label grid *is* the source slices: highdicom matches each
  frame to its source image and adds per-frame derivation references;
* a volume the loader resampled (gantry tilt, uneven spacing, missing slices), whose
  planes match no source image: the frames stand on their own geometry and the SEG still
  references the source series and its frame of reference.

Frame layout: label axis ``i`` is the DICOM column, ``j`` the row and ``k`` the frame,
the order the DICOM loader keeps (it never reorients). Only labels present in the map
become segments, numbered 1..N in ascending label value; frames with no voxel of a
segment are omitted. The source images' headers come with the source Volume
(``meta.source_headers``, kept by the loader): no input file is opened here.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrecon.atomic import atomic_write_path
from medrecon.errors import InputError
from medrecon.io.dicom.sources import SourceHeaders, read_source_headers
from medrecon.labels.terminology import TISSUE  # labels without codes: Slicer's default
from medrecon.volume import Volume

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pydicom

    from medrecon.labels import Code, Label

__all__ = ["NO_SEG_HINT", "write_dicom_seg"]

logger = logging.getLogger(__name__)

#: What to tell a user whose source images cannot be used.
NO_SEG_HINT = "keep the source DICOM files in place, or run without a DICOM SEG (--no-dicom-seg)"

#: Positions (mm) closer than this count as the same plane.
_POSITION_TOLERANCE_MM = 1e-3


def _source_headers(
    source: Volume | Sequence[str | os.PathLike[str]], notes: list[str] | None
) -> list[pydicom.Dataset]:
    """The source images' headers, to change in memory; raise InputError if unusable.

    UIDs that de-identified sources lack were generated in memory when the headers were
    read (see :func:`medrecon.io.dicom.uids.fill_blank_uids`); the note saying so goes to
    ``notes``.
    """
    if isinstance(source, Volume):
        sources: SourceHeaders | None = source.meta.source_headers
    else:
        files = list(source)
        try:
            sources = read_source_headers(files) if files else None
        except InputError as error:
            # Chained to the reader's own cause (pydicom's error, or none), as before.
            raise InputError(f"{error}; {NO_SEG_HINT}") from error.__cause__
    if sources is None or not sources.datasets:
        raise InputError(
            "no source DICOM files are recorded for this volume, so a DICOM SEG cannot "
            f"reference them; {NO_SEG_HINT}"
        )
    if sources.note is not None:
        logger.warning("DICOM SEG: %s", sources.note)
        if notes is not None:
            notes.append(f"DICOM SEG: {sources.note}")
    if sources.problem is not None:
        raise InputError(f"{sources.problem}; {NO_SEG_HINT}")
    return sources.copied()


def write_dicom_seg(
    path: str | os.PathLike[str],
    labels: Volume,
    label_table: Sequence[Label],
    source: Volume | Sequence[str | os.PathLike[str]],
    *,
    pipeline_name: str = "medrecon",
    pipeline_version: str = "1",
    series_description: str = "medrecon segmentation",
    series_number: int | None = None,
    content_label: str = "MEDRECON",
    warnings_out: list[str] | None = None,
) -> Path:
    """Write ``labels`` as a BINARY DICOM SEG at ``path`` (atomically) and return the path.

    ``source`` is the source image Volume (the headers its loader kept,
    ``meta.source_headers``, are used) or the source files themselves (their headers are
    read). Raises :class:`~medrecon.errors.InputError` when the label map holds values
    the table does not name, or the source images are missing or unusable. Sources
    without UIDs get generated ones; ``warnings_out`` receives that warning.
    """
    headers = _source_headers(source, warnings_out)
    for ds in headers:
        if "PerFrameFunctionalGroupsSequence" not in ds and ds.get("SliceThickness") is None:
            ds.SliceThickness = labels.spacing[2]  # in memory only: highdicom reads it
    labelmap, present = _segment_labelmap(labels, label_table)
    descriptions = [
        _segment_description(number, label, pipeline_name, pipeline_version)
        for number, label in enumerate(present, start=1)
    ]
    frames = np.ascontiguousarray(labelmap.transpose(2, 1, 0))  # (k, rows=j, columns=i)
    positions, orientation, measures = _plane_geometry(labels, headers)
    source_series = headers[0].get("SeriesNumber")
    if series_number is None:
        series_number = int(source_series) + 1000 if source_series is not None else 1000
    with warnings.catch_warnings():
        # Anonymised sources often hold one-word patient names ("REMOVED"); copied as is.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        try:
            seg = _build_segmentation(
                headers,
                frames,
                descriptions,
                positions=positions,
                orientation=orientation,
                measures=measures,
                series_number=series_number,
                series_description=series_description,
                content_label=content_label,
                pipeline=(pipeline_name, pipeline_version),
            )
        except ValueError as error:  # highdicom's checks on the source series
            raise InputError(
                f"cannot build a DICOM SEG on series {headers[0].SeriesInstanceUID} "
                f"({headers[0].filename}): {error}; {NO_SEG_HINT}"
            ) from error
    # highdicom swaps in the source's measures when the pixel spacing matches; the
    # planes of a resampled grid have their own thickness and spacing.
    seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence = measures
    target = Path(path)
    with atomic_write_path(target) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    logger.info(
        "wrote DICOM SEG %s: %d segments, %d frames, referencing series %s",
        target,
        len(present),
        int(seg.NumberOfFrames),
        headers[0].SeriesInstanceUID,
    )
    return target


def _build_segmentation(
    headers: Sequence[pydicom.Dataset],
    frames: np.ndarray,
    descriptions: Sequence[Any],
    *,
    positions: Any,
    orientation: Any,
    measures: Any,
    series_number: int,
    series_description: str,
    content_label: str,
    pipeline: tuple[str, str],
) -> Any:
    import highdicom as hd
    from pydicom.uid import ExplicitVRLittleEndian

    from medrecon._version import __version__

    pipeline_name, pipeline_version = pipeline
    # highdicom takes one multi-frame source (e.g. one time point of an enhanced series);
    # the other files of the series are still referenced.
    multiframe = "PerFrameFunctionalGroupsSequence" in headers[0]
    return hd.seg.Segmentation(
        source_images=headers[:1] if multiframe else headers,
        further_source_images=headers[1:] if multiframe else None,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medrecon",
        manufacturer_model_name=pipeline_name,
        software_versions=f"medrecon {__version__}",
        device_serial_number="none",
        content_label=content_label,
        content_description=f"{pipeline_name} {pipeline_version}"[:64],
        series_description=series_description,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        plane_positions=positions,
        plane_orientation=orientation,
        pixel_measures=measures,
        omit_empty_frames=True,
    )


def _segment_labelmap(
    labels: Volume, label_table: Sequence[Label]
) -> tuple[np.ndarray, list[Label]]:
    """The map renumbered to segments 1..N (present labels, ascending value) and those labels."""
    array = np.asarray(labels.array)
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.integer):
        raise InputError(
            f"a DICOM SEG needs a 3D integer label map, got shape {array.shape} {array.dtype}"
        )
    values = np.unique(array)
    values = values[values != 0]
    by_value = {label.value: label for label in label_table}
    unknown = [int(v) for v in values if int(v) not in by_value]
    if unknown:
        raise InputError(
            f"label map holds values {unknown} that the label table does not name; "
            "add them to the pipeline's labels or remove them from the map"
        )
    if values.size == 0:
        raise InputError("label map holds no labels: there is nothing to write as a DICOM SEG")
    present = [by_value[int(v)] for v in values]
    lut = np.zeros(int(values.max()) + 1, dtype=np.uint16 if values.size > 255 else np.uint8)
    lut[values] = np.arange(1, values.size + 1)
    return lut[array], present


def _coded(code: Code | None, fallback: Code = TISSUE) -> Any:
    from highdicom.sr import CodedConcept

    code = code or fallback
    return CodedConcept(code.value, code.scheme, code.meaning)


def _segment_description(number: int, label: Label, pipeline_name: str, version: str) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=pipeline_name,
        family=codes.DCM.ArtificialIntelligence,
        version=str(version),
        source="medrecon",
    )
    # A label without a type code is described generically; its name stays the label.
    typed = label.type is not None
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label.name[:64],
        segmented_property_category=_coded(label.category if typed else None),
        segmented_property_type=_coded(label.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*(int(c) for c in label.color)),
    )
    if label.type_modifier is not None:
        type_item = description.SegmentedPropertyTypeCodeSequence[0]
        type_item.SegmentedPropertyTypeModifierCodeSequence = [_coded(label.type_modifier)]
    return description


def _plane_geometry(labels: Volume, headers: Sequence[pydicom.Dataset]) -> tuple[Any, Any, Any]:
    """Per-frame positions, shared orientation and pixel measures from the label affine."""
    import highdicom as hd

    lps = labels.lps_affine
    columns, rows, normal = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    col_spacing, row_spacing = float(np.linalg.norm(columns)), float(np.linalg.norm(rows))
    cosines = np.concatenate([columns / col_spacing, rows / row_spacing])
    n_frames = labels.spatial_shape[2]
    origins = lps[:3, 3] + np.arange(n_frames)[:, None] * normal
    positions = [
        hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, [float(v) for v in origin])
        for origin in origins
    ]
    orientation = hd.PlaneOrientationSequence(
        hd.CoordinateSystemNames.PATIENT, [float(v) for v in cosines]
    )
    unit_normal = np.cross(cosines[:3], cosines[3:])
    slice_spacing = abs(float(normal @ unit_normal))  # distance between planes
    thickness = slice_spacing
    if _planes_match_source(origins, cosines, headers) and "SliceThickness" in headers[0]:
        thickness = float(headers[0].SliceThickness)  # the source's own planes
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=[row_spacing, col_spacing],  # DICOM order: between rows, columns
        slice_thickness=thickness,
        spacing_between_slices=slice_spacing,
    )
    return positions, orientation, measures


def _planes_match_source(
    origins: np.ndarray, cosines: np.ndarray, headers: Sequence[pydicom.Dataset]
) -> bool:
    """True when every label plane is one of the source images' planes."""
    first = headers[0]
    if "ImageOrientationPatient" not in first or "ImagePositionPatient" not in first:
        return False  # enhanced multi-frame: per-frame geometry, not compared here
    if not np.allclose(np.asarray(first.ImageOrientationPatient, dtype=float), cosines, atol=1e-4):
        return False
    source = np.array([ds.ImagePositionPatient for ds in headers], dtype=np.float64)
    distance = np.linalg.norm(origins[:, None, :] - source[None, :, :], axis=2)
    return bool(np.all(distance.min(axis=1) < _POSITION_TOLERANCE_MM))
