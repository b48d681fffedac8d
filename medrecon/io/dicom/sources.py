"""The source images' headers that a DICOM SEG references, kept from the header pass.

The loader reads every file's header once (header.py); for the files of each volume it
keeps that header, readied the way a DICOM SEG must reference it (highdicom's
``Segmentation(source_images=...)`` takes these datasets): public elements only, no
pixel data, blank UIDs generated (:func:`~medrecon.io.dicom.uids.fill_blank_uids`), an
enhanced file's per-frame orientation and pixel measures copied to its shared groups
when all frames agree, the type 2 patient/study attributes present. The Volume carries
them (``meta.source_headers``), so the SEG writer never opens an input file, and a
zip's members, unpacked only while loading, need not outlive the load.

Memory: one header per source file, about 25 kB for a CT slice (7 MB for a 300-slice
series); an enhanced multi-frame file holds its per-frame groups (about 1 MB).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medrecon.errors import InputError
from medrecon.io.archive import member_names
from medrecon.io.dicom.uids import fill_blank_uids

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pydicom.dataset import Dataset

    from medrecon.io.dicom.records import SliceHeader

__all__ = ["SourceHeaders", "keep_for_reference", "read_source_headers", "source_headers"]

log = logging.getLogger(__name__)

#: Type 2 attributes highdicom copies from the source; anonymised files may lack them.
_TYPE2_PATIENT_STUDY = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_PIXEL_GROUP = 0x7FE0  # pixel data and everything after it: never kept
_CURVE_OVERLAY = (0x5000, 0x6000)  # repeating groups whose large data values are dropped


@dataclass(frozen=True, eq=False)
class SourceHeaders:
    """One volume's source headers, in ``meta.source_files`` order, ready to reference.

    ``note`` says which UIDs were generated (the SEG writer warns with it);
    ``problem`` says why a DICOM SEG cannot reference these sources (None: it can).
    Read-only by agreement: every copy of a Volume (``with_array``, resampling,
    ``meta.copy()``) shares the one object, so a derived volume still references its
    source series; :meth:`copied` gives datasets a writer may change.
    """

    datasets: tuple[Dataset, ...]
    note: str | None = None
    problem: str | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> SourceHeaders:
        return self  # shared, not copied (see above)

    def __repr__(self) -> str:
        return f"SourceHeaders({len(self.datasets)} files, problem={self.problem!r})"

    def copied(self) -> list[Dataset]:
        """The datasets, each with top-level elements of its own (sequences shared)."""
        return [_own_copy(ds) for ds in self.datasets]

    def renamed(self, names: dict[str, str]) -> SourceHeaders:
        """These headers named by ``names`` (temporary path -> shown name, e.g. a zip
        member ``archive.zip!member``), in their file names and messages."""
        for ds in self.datasets:  # this volume's own copies, made by source_headers()
            ds.filename = names.get(ds.filename, ds.filename)
        note, problem = (member_names(t, names) if t else t for t in (self.note, self.problem))
        return replace(self, note=note, problem=problem)


def keep_for_reference(ds: Dataset) -> None:
    """Trim ``ds``, in place, to the header the loader keeps: public elements before the
    pixel data, every value in memory (no read of the file is left for later)."""
    for tag in list(ds.keys()):
        if tag.is_private or tag.group >= _PIXEL_GROUP:
            del ds[tag]
            continue
        raw = ds.get_item(tag)
        if getattr(raw, "value", b"") is not None or not getattr(raw, "length", 0):
            continue
        # A value over the header pass's defer size was left on disk.
        if tag.group & 0xFF00 in _CURVE_OVERLAY:
            del ds[tag]
            continue
        try:
            ds[tag]  # reads it now, while the file is at hand (rare: long texts)
        except (OSError, ValueError, TypeError, KeyError):
            del ds[tag]


def source_headers(records: Sequence[SliceHeader]) -> SourceHeaders | None:
    """The kept headers of the files ``records`` come from (sorted by path, as
    ``meta.source_files``), readied for a DICOM SEG; None if a record kept none."""
    by_file: dict[str, Dataset | None] = {}
    for rec in records:
        by_file.setdefault(rec.path, rec.header)
    if any(ds is None for ds in by_file.values()):
        return None
    # Own copies: a multi-frame file may feed two volumes (echoes, image types).
    return _ready([_own_copy(by_file[path]) for path in sorted(by_file)])


def read_source_headers(files: Sequence[str | os.PathLike[str]]) -> SourceHeaders:
    """Read ``files``' headers from disk (no pixel data), readied as the loader readies
    its own; raises :class:`InputError` for a missing or unreadable file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    datasets = []
    for file in files:
        try:
            datasets.append(pydicom.dcmread(file, stop_before_pixels=True))
        except FileNotFoundError:
            raise InputError(
                f"source DICOM file {file} is missing: a DICOM SEG must reference its source images"
            ) from None
        except (InvalidDicomError, OSError, ValueError) as error:
            raise InputError(f"source DICOM file {file} cannot be read ({error})") from error
    return _ready(datasets)


def _ready(datasets: list[Dataset]) -> SourceHeaders:
    """Generate blank UIDs, check the series can be referenced, fill type 2 attributes.

    Nothing here stops a load: what a SEG cannot use becomes ``problem``.
    """
    try:
        note = fill_blank_uids(datasets)
    except ValueError as error:  # no image SOP class to name
        problem = f"cannot reference the source images: {error}"
        return SourceHeaders(tuple(datasets), problem=problem)
    except _MALFORMED as error:
        return SourceHeaders(tuple(datasets), problem=_malformed(error, datasets))
    try:
        problem = _check(datasets) if datasets else None
    except _MALFORMED as error:
        problem = _malformed(error, datasets)
    for ds in datasets:
        for keyword in _TYPE2_PATIENT_STUDY:
            if keyword not in ds:
                setattr(ds, keyword, None)  # empty value, as type 2 allows
    return SourceHeaders(tuple(datasets), note=note, problem=problem)


#: What a malformed value or functional group raises (e.g. an empty shared group).
_MALFORMED = (AttributeError, IndexError, KeyError, TypeError, ValueError, OSError)


def _malformed(error: Exception, datasets: list[Dataset]) -> str:
    return (
        f"the source headers cannot be referenced ({type(error).__name__}: {error}; "
        f"{datasets[0].filename})"
    )


def _check(headers: Sequence[Dataset]) -> str | None:
    """Why these headers cannot be one SEG's source series (None when they can)."""
    first = headers[0]
    series = first.get("SeriesInstanceUID")
    for ds in headers:
        if ds.get("SeriesInstanceUID") != series or ds.get("StudyInstanceUID") != first.get(
            "StudyInstanceUID"
        ):
            return (
                f"source files {headers[0].filename} and {ds.filename} belong to different "
                "series or studies; a DICOM SEG references one series"
            )
    for ds in headers:
        if "PerFrameFunctionalGroupsSequence" in ds:
            _share_frame_geometry(ds)
    shared = first.get("SharedFunctionalGroupsSequence", [{}])[0]
    oriented = "ImageOrientationPatient" in first or "PlaneOrientationSequence" in shared
    if "FrameOfReferenceUID" not in first or not oriented:
        return (
            f"source series {series} ({first.filename}) has no frame of reference or one "
            "shared plane orientation, so a DICOM SEG cannot be placed beside it"
        )
    return None


def _share_frame_geometry(ds: Dataset) -> None:
    """Enhanced files often give orientation and pixel measures per frame; highdicom
    reads them from the shared groups. Copy them there (in memory) when all frames agree."""
    shared = ds.SharedFunctionalGroupsSequence[0]
    frames = ds.PerFrameFunctionalGroupsSequence
    for keyword, attribute in (
        ("PlaneOrientationSequence", "ImageOrientationPatient"),
        ("PixelMeasuresSequence", "PixelSpacing"),
    ):
        if keyword in shared or keyword not in frames[0]:
            continue
        values = [np.asarray(getattr(f[keyword][0], attribute), dtype=float) for f in frames]
        if all(np.allclose(v, values[0], atol=1e-5) for v in values):
            setattr(shared, keyword, frames[0][keyword].value)


def _own_copy(ds: Dataset) -> Dataset:
    # copy.copy shares the element dict, and setting a present element changes the
    # element object itself: copy both, one level deep (nested sequences stay shared).
    new = copy.copy(ds)
    new._dict = {tag: copy.copy(elem) for tag, elem in ds._dict.items()}
    return new
