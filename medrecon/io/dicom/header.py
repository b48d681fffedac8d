"""Read one DICOM file's header into plain per-slice records.

A record (``SliceHeader``) is one 2D slice: a classic single-frame image, one
frame of an enhanced multi-frame object, or one tile of a Siemens mosaic. Every
later stage (grouping, sorting, geometry) works on these records only, so the
three sources share one path. Pixels are not read here.
"""

from __future__ import annotations

import logging
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medrecon.io.dicom.records import SliceHeader, with_position
from medrecon.io.dicom.sources import keep_for_reference
from medrecon.io.dicom.uids import NON_IMAGE_MODALITIES, missing_uids, series_fallback_uid
from medrecon.io.dicom.values import (
    SkipFile,
    floats,
    opt_float,
    opt_int,
    pixel_spacing,
    plane_orientation,
)
from medrecon.io.dicom.vendor import read_vendor

__all__ = [
    "DICOMDIR_SOP_CLASS",
    "SkipFile",
    "SliceHeader",
    "read_slice_headers",
    "with_position",
]

log = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Storage SOP classes that are not image slices (DICOM PS3.4 Annex B). A class
# matches a root when it equals it or extends it ("root.x"); first match wins.
_NON_IMAGE_ROOTS: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.5.1.4.1.1.7", "secondary capture (screenshot, dose sheet or report)"),
    ("1.2.840.10008.5.1.4.1.1.88", "structured report (SR, e.g. dose report)"),
    ("1.2.840.10008.5.1.4.1.1.66.4", "segmentation object (SEG)"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data, registration or fiducials object"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "RT structure set (RTSTRUCT)"),
    ("1.2.840.10008.5.1.4.1.1.481", "radiotherapy object (RT)"),
    ("1.2.840.10008.5.1.4.1.1.11", "presentation state"),
    ("1.2.840.10008.5.1.4.1.1.104", "encapsulated document (PDF/CDA)"),
    ("1.2.840.10008.5.1.4.1.1.9", "waveform"),
    ("1.2.840.10008.5.1.4.1.1.1", "projection radiograph (CR/DX/MG), not a slice stack"),
    ("1.2.840.10008.5.1.4.1.1.6", "ultrasound image, not a slice stack"),
    ("1.2.840.10008.5.1.4.1.1.77", "visible light photograph"),
    ("1.2.840.10008.5.1.1", "print object"),
)
_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "TOPOGRAM", "SCANOGRAM"}
_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_DEFER = 2048  # bytes: larger values (pixels, big private blobs) are left on disk


def _dcmread(path: str) -> Dataset:
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER)
    except InvalidDicomError:
        ds = None
    except Exception as exc:  # pydicom raises many types on a damaged file
        raise SkipFile(f"corrupt or truncated DICOM header ({type(exc).__name__}: {exc})") from exc
    if ds is not None:
        # A 'DICM' file whose dataset parsed to nearly nothing is damaged, not a non-image.
        meta = getattr(ds, "file_meta", None)
        media = str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
        if media == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            return ds  # an index: _classify reports it as such
        if not getattr(meta, "TransferSyntaxUID", None) or (
            "SOPClassUID" not in ds and "Rows" not in ds
        ):
            raise SkipFile("corrupt or truncated DICOM header (no transfer syntax or SOP class)")
        return ds
    # No 'DICM' preamble: accept old ACR-NEMA-style files only if they parse to an image.
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER, force=True)
    except Exception as exc:
        raise SkipFile("not a DICOM file") from exc
    if "SOPClassUID" not in ds and "Rows" not in ds:
        raise SkipFile("not a DICOM file")
    return ds


def _classify(ds: Dataset) -> None:
    """Raise SkipFile unless ``ds`` is an image slice source we stack."""
    media = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if media == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        raise SkipFile("DICOMDIR index (lists files; not an image)")
    sop_class = str(ds.get("SOPClassUID") or media or "").strip()
    if not sop_class and str(ds.get("Modality", "") or "").upper() in NON_IMAGE_MODALITIES:
        # De-identified files may lack SOPClassUID; Modality still tells these apart.
        raise SkipFile(NON_IMAGE_MODALITIES[str(ds.Modality).upper()])
    for root, reason in _NON_IMAGE_ROOTS:
        if sop_class == root or sop_class.startswith(root + "."):
            raise SkipFile(reason)
    image_type = {str(v).upper() for v in (ds.get("ImageType") or [])}
    if image_type & _LOCALIZER_TYPES:
        raise SkipFile("localizer/scout image")
    if "SCREEN SAVE" in image_type or "DOSE_INFO" in image_type:
        raise SkipFile("secondary capture (screenshot, dose sheet or report)")
    if (0x7FE0, 0x0010) not in ds and "FloatPixelData" not in ds:
        raise SkipFile("no pixel data (not an image)")
    from medrecon.io.dicom.colour import check_colour

    check_colour(ds)


def _seq_item(group: Dataset | None, keyword: str) -> Dataset | None:
    if group is None or keyword not in group:
        return None
    seq = group[keyword].value
    return seq[0] if len(seq) else None


def _frame_attr(per_frame: Dataset | None, shared: Dataset | None, seq: str, attr: str) -> Any:
    """Look an attribute up in a per-frame functional group, then the shared one."""
    for group in (per_frame, shared):
        item = _seq_item(group, seq)
        if item is not None and attr in item:
            return item.get(attr)
    return None


def _pixel_location(ds: Dataset, ts: str) -> tuple[int | None, int | None]:
    raw = ds._dict.get(0x7FE00010)  # raw element: value left on disk by defer_size
    if (
        ts in _NATIVE_LE
        and raw is not None
        and getattr(raw, "value", b"") is None
        and getattr(raw, "value_tell", None) is not None
        and raw.length not in (None, 0xFFFFFFFF)
    ):
        return int(raw.value_tell), int(raw.length)
    return None, None


def _base_record(ds: Dataset, path: str) -> dict[str, Any]:
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if not ts:  # headerless (ACR-NEMA style) files are implicit little endian
        ts = "1.2.840.10008.1.2"
    offset, length = _pixel_location(ds, ts)
    missing = missing_uids(ds)
    series_uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if not series_uid:  # de-identified: group by the next best keys (uids.py)
        series_uid = series_fallback_uid(ds)
    if int(ds.Rows) < 1 or int(ds.Columns) < 1:
        raise SkipFile(f"invalid image size (Rows {ds.Rows}, Columns {ds.Columns})")
    return {
        "path": path,
        "uid_fallback": missing,
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "") or "").strip() or path,
        "sop_class_uid": str(ds.get("SOPClassUID", "") or "").strip(),
        "series_uid": series_uid,
        "study_uid": str(ds.get("StudyInstanceUID", "") or "").strip(),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "") or "") or None,
        "modality": str(ds.get("Modality", "") or "OT"),
        "series_number": opt_int(ds.get("SeriesNumber")),
        "series_description": str(ds.get("SeriesDescription", "") or ""),
        "image_type": tuple(str(v).upper() for v in (ds.get("ImageType") or [])),
        "rows": int(ds.Rows),
        "cols": int(ds.Columns),
        "instance_number": opt_int(ds.get("InstanceNumber")),
        "transfer_syntax": ts,
        "bits_allocated": int(ds.get("BitsAllocated", 16) or 16),
        "bits_stored": int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16),
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "photometric": str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2"),
        "pixel_offset": offset,
        "pixel_length": length,
        "mosaic_tiles": 1,
        "slice_thickness": opt_float(ds.get("SliceThickness")),
        "spacing_between_slices": opt_float(ds.get("SpacingBetweenSlices")),
        "gantry_tilt": opt_float(ds.get("GantryDetectorTilt")),
        "n_frames": int(ds.get("NumberOfFrames", 1) or 1),
        "body_part": str(ds.get("BodyPartExamined", "") or "").strip(),
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1) or 1),
    }


def _temporal_key(ds: Dataset) -> tuple[Any, ...]:
    return (
        opt_int(ds.get("TemporalPositionIdentifier")) or 0,
        opt_float(ds.get("TriggerTime")) or 0.0,
        opt_int(ds.get("AcquisitionNumber")) or 0,
        str(ds.get("AcquisitionTime", "") or ds.get("ContentTime", "") or ""),
        opt_int(ds.get("InstanceNumber")) or 0,
    )


def _single_frame(ds: Dataset, base: dict[str, Any]) -> list[SliceHeader]:
    position = ds.get("ImagePositionPatient")
    if position is None:
        from medrecon.io.dicom.uih import vframe_first_position

        position = vframe_first_position(ds)  # UIH grids may keep positions per slice only
    if "ImageOrientationPatient" not in ds or position is None:
        raise SkipFile("no image geometry (ImageOrientationPatient/ImagePositionPatient missing)")
    path = base["path"]
    iop = plane_orientation(ds.ImageOrientationPatient, path)
    ipp = floats(position, 3, "ImagePositionPatient", path)
    spacing = pixel_spacing(ds.get("PixelSpacing") or [1.0, 1.0], path)
    rec = SliceHeader(
        frame=None,
        kind="single",
        iop=iop,
        ipp=ipp,  # type: ignore[arg-type]
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slope=opt_float(ds.get("RescaleSlope")) or 1.0,
        intercept=opt_float(ds.get("RescaleIntercept")) or 0.0,
        echo_number=opt_int(ds.get("EchoNumbers")),
        echo_time=opt_float(ds.get("EchoTime")),
        temporal=_temporal_key(ds),
        vendor=read_vendor(ds),
        **base,
    )
    if "MOSAIC" in rec.image_type:
        from medrecon.io.dicom.mosaic import mosaic_tiles

        return mosaic_tiles(ds, rec)
    if "VFRAME" in rec.image_type and rec.vendor.manufacturer == "UIH":
        from medrecon.io.dicom.uih import grid_tiles

        return grid_tiles(ds, rec)
    return [rec]


def _multi_frame(ds: Dataset, base: dict[str, Any]) -> list[SliceHeader]:
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per_frames = ds.get("PerFrameFunctionalGroupsSequence")
    n = base["n_frames"]
    path = base["path"]
    if per_frames is None or len(per_frames) != n:
        raise SkipFile(
            f"multi-frame file without per-frame functional groups for its {n} frames "
            "(legacy multi-frame without geometry)"
        )
    file_temporal = _temporal_key(ds)
    out = []
    for index, pf in enumerate(per_frames):
        iop = _frame_attr(pf, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        ipp = _frame_attr(pf, shared, "PlanePositionSequence", "ImagePositionPatient")
        if iop is None or ipp is None:
            raise SkipFile(f"frame {index + 1} has no plane position/orientation")
        spacing = _frame_attr(pf, shared, "PixelMeasuresSequence", "PixelSpacing") or [1.0, 1.0]
        slope = _frame_attr(pf, shared, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _frame_attr(pf, shared, "PixelValueTransformationSequence", "RescaleIntercept")
        frame_type = _frame_attr(pf, shared, "MRImageFrameTypeSequence", "FrameType") or (
            _frame_attr(pf, shared, "CTImageFrameTypeSequence", "FrameType")
        )
        echo_time = _frame_attr(pf, shared, "MREchoSequence", "EffectiveEchoTime")
        temporal_index = _frame_attr(pf, shared, "FrameContentSequence", "TemporalPositionIndex")
        acq_time = _frame_attr(pf, shared, "FrameContentSequence", "FrameAcquisitionDateTime")
        thickness = _frame_attr(pf, shared, "PixelMeasuresSequence", "SliceThickness")
        between = _frame_attr(pf, shared, "PixelMeasuresSequence", "SpacingBetweenSlices")
        fields = dict(base)
        if frame_type:
            fields["image_type"] = tuple(str(v).upper() for v in frame_type)
        fields["slice_thickness"] = opt_float(thickness) or base["slice_thickness"]
        fields["spacing_between_slices"] = opt_float(between) or base["spacing_between_slices"]
        out.append(
            SliceHeader(
                frame=index,
                kind="multiframe",
                iop=plane_orientation(iop, path),
                ipp=floats(ipp, 3, "ImagePositionPatient", path),  # type: ignore[arg-type]
                pixel_spacing=pixel_spacing(spacing, path),  # type: ignore[arg-type]
                slope=opt_float(slope) or 1.0,
                intercept=opt_float(intercept) or 0.0,
                echo_number=None,
                echo_time=opt_float(echo_time),
                # Within one file the temporal index orders frames; across files the
                # file's own acquisition/instance keys do.
                temporal=(opt_int(temporal_index) or 0, *file_temporal, str(acq_time or "")),
                vendor=read_vendor(ds, pf, shared),
                **fields,
            )
        )
    return out


def read_slice_headers(path: str, *, keep_header: bool = False) -> list[SliceHeader]:
    """All slices stored in the DICOM file at ``path`` (headers only).

    ``keep_header``: the records carry the file's header (``SliceHeader.header``,
    trimmed by :func:`~medrecon.io.dicom.sources.keep_for_reference`) for a DICOM SEG.
    Raises ``SkipFile`` with the reason for a file that is not a stackable image
    (not DICOM, a localizer, a report, a DICOMDIR, damaged header...).
    """
    ds = _dcmread(path)
    try:
        _classify(ds)
        base = _base_record(ds, path)
        if keep_header:
            base["header"] = ds
        if base["n_frames"] > 1 or "PerFrameFunctionalGroupsSequence" in ds:
            records = _multi_frame(ds, base)
        else:
            records = _single_frame(ds, base)
    except SkipFile:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        # Values pydicom cannot parse (nonsense in a numeric element) land here too.
        raise SkipFile(f"incomplete image header ({type(exc).__name__}: {exc})") from exc
    if keep_header:
        keep_for_reference(ds)  # after the records: they read private (vendor) tags
    return records
