"""Blanked or removed UIDs (de-identified studies): fallback keys and derived UIDs.

Many de-identification tools blank or drop SeriesInstanceUID, StudyInstanceUID,
SOPInstanceUID and SOPClassUID. Such files are still grouped, by the next best
series-level keys (``SERIES_FALLBACK_KEYS``); the group gets a UID derived from
those keys ("2.25." + 128 bits of their SHA-256), so the same files give the same
grouping and the same UID every run, wherever the folder lies. Orientation, size,
image type and echo split the group further, as for any series (group.py).
Files whose UIDs are present are grouped exactly as before.

AcquisitionTime is deliberately not a key: it changes from slice to slice in
many CT and MR series, so it would cut one series into single slices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from pydicom.dataset import Dataset

__all__ = [
    "NON_IMAGE_MODALITIES",
    "SERIES_FALLBACK_KEYS",
    "STUDY_FALLBACK_KEYS",
    "UID_KEYWORDS",
    "derived_uid",
    "fallback_warning",
    "fill_blank_uids",
    "is_blank",
    "missing_in_records",
    "series_fallback_uid",
    "study_fallback_uid",
]

#: The UIDs whose absence the loader tolerates (and reports).
UID_KEYWORDS = ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID")

#: Study-level keys: they keep series of different studies apart when StudyInstanceUID is gone.
STUDY_FALLBACK_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
)
#: Series-level keys, constant within one series, that stand in for SeriesInstanceUID.
SERIES_FALLBACK_KEYS = (
    *STUDY_FALLBACK_KEYS,
    "FrameOfReferenceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
)

#: Modalities that are not image slices: how a file with a blank SOPClassUID is told apart.
NON_IMAGE_MODALITIES = {
    "SEG": "segmentation object (SEG)",
    "SR": "structured report (SR, e.g. dose report)",
    "RTSTRUCT": "RT structure set (RTSTRUCT)",
    "RTDOSE": "radiotherapy object (RT)",
    "RTPLAN": "radiotherapy object (RT)",
    "PR": "presentation state",
    "KO": "key object selection",
    "DOC": "encapsulated document (PDF/CDA)",
    "REG": "raw data, registration or fiducials object",
}

# Storage SOP classes for a blank SOPClassUID, by Modality (PS3.4 Annex B), used only
# when a DICOM SEG must name its source's class.
_CLASSIC_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "NM": "1.2.840.10008.5.1.4.1.1.20",
}
_ENHANCED_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2.1", "MR": "1.2.840.10008.5.1.4.1.1.4.1"}


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # an unparsable value counts as absent, like a blank one
        return ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def is_blank(ds: Dataset, keyword: str) -> bool:
    """True when ``keyword`` is absent, empty or whitespace only."""
    return not _text(ds, keyword)


def missing_uids(ds: Dataset) -> tuple[str, ...]:
    """The ``UID_KEYWORDS`` that ``ds`` lacks (blank or removed), in that order."""
    return tuple(k for k in UID_KEYWORDS if is_blank(ds, k))


def derived_uid(kind: str, values: Iterable[Any]) -> str:
    """A deterministic UID ("2.25." form, PS3.5 B.2) from ``kind`` and ``values``."""
    digest = hashlib.sha256(repr((kind, *values)).encode("utf-8", "backslashreplace")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def series_fallback_uid(ds: Dataset) -> str:
    """The UID that stands in for a blank SeriesInstanceUID of ``ds``."""
    return derived_uid("series", (_text(ds, k) for k in SERIES_FALLBACK_KEYS))


def study_fallback_uid(ds: Dataset) -> str:
    """The UID that stands in for a blank StudyInstanceUID of ``ds``."""
    return derived_uid("study", (_text(ds, k) for k in STUDY_FALLBACK_KEYS))


def missing_in_records(records: Sequence[Any]) -> list[str]:
    """UIDs blank or missing in any of ``records``' files, in :data:`UID_KEYWORDS` order."""
    found = {k for rec in records for k in getattr(rec, "uid_fallback", ())}
    return [k for k in UID_KEYWORDS if k in found]


def fallback_warning(records: Sequence[Any]) -> str | None:
    """One warning for a stack whose files lack UIDs (``records``: its SliceHeaders)."""
    counts: dict[str, int] = {}
    files: dict[str, set[str]] = {}
    for rec in records:
        for keyword in getattr(rec, "uid_fallback", ()):
            files.setdefault(keyword, set()).add(rec.path)
    for keyword in UID_KEYWORDS:
        if keyword in files:
            counts[keyword] = len(files[keyword])
    if not counts:
        return None
    n_files = len({r.path for r in records})
    what = ", ".join(
        k if n == n_files else f"{k} ({n} of {n_files} files)" for k, n in counts.items()
    )
    parts = [f"blank or missing {what} (de-identified files?)"]
    if "SeriesInstanceUID" in counts:
        parts.append(
            "grouped by those of " + ", ".join(SERIES_FALLBACK_KEYS) + " that are present, "
            f"then orientation/size; series UID {records[0].series_uid} derived from them"
        )
    if "SOPInstanceUID" in counts:
        parts.append("slices identified by file path")
    return "; ".join(parts)


def _sop_class(ds: Dataset) -> str | None:
    media = _text(getattr(ds, "file_meta", Dataset()), "MediaStorageSOPClassUID")
    if media:
        return media
    modality = _text(ds, "Modality").upper()
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _ENHANCED_CLASS.get(modality)
    return _CLASSIC_CLASS.get(modality)


def _file_uid(ds: Dataset) -> str:
    digest = hashlib.sha256()
    with open(ds.filename, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return derived_uid("instance", (digest.hexdigest(),))


def fill_blank_uids(headers: Sequence[Dataset]) -> str | None:
    """Give ``headers`` (in memory) the UIDs a DICOM SEG must reference; None if none lacked.

    Series and study UIDs are the loader's derived ones (so they match the volume's
    ``meta.series_uid``), a frame of reference is derived from the series key, and an
    instance UID from the SHA-256 of its file. Returns a warning saying what was made.
    A blank SOPClassUID is taken from the file meta, else from Modality; raises
    ValueError when neither names an image class.
    """
    made: dict[str, int] = {}
    series: set[str] = set()
    study: set[str] = set()
    for ds in headers:
        fixes: dict[str, str] = {}
        if is_blank(ds, "SeriesInstanceUID"):
            fixes["SeriesInstanceUID"] = series_fallback_uid(ds)
            series.add(fixes["SeriesInstanceUID"])
        if is_blank(ds, "StudyInstanceUID"):
            fixes["StudyInstanceUID"] = study_fallback_uid(ds)
            study.add(fixes["StudyInstanceUID"])
        if is_blank(ds, "FrameOfReferenceUID"):
            key = fixes.get("SeriesInstanceUID") or _text(ds, "SeriesInstanceUID")
            fixes["FrameOfReferenceUID"] = derived_uid("frame-of-reference", (key,))
        if is_blank(ds, "SOPInstanceUID"):
            fixes["SOPInstanceUID"] = _file_uid(ds)
        if is_blank(ds, "SOPClassUID"):
            sop_class = _sop_class(ds)
            if sop_class is None:
                raise ValueError(
                    f"{ds.filename} has no SOPClassUID and its Modality "
                    f"{_text(ds, 'Modality') or '(none)'} names no image storage class"
                )
            fixes["SOPClassUID"] = sop_class
        for keyword, value in fixes.items():
            setattr(ds, keyword, value)
            made[keyword] = made.get(keyword, 0) + 1
    if not made:
        return None
    listed = ", ".join(f"{k} ({n} file(s))" for k, n in made.items())
    named = "".join(
        f"; {label} {', '.join(sorted(uids))}"
        for label, uids in (("series", series), ("study", study))
        if uids
    )
    return (
        f"the source files lack UIDs, so the DICOM SEG references UIDs medrecon generated "
        f"(deterministic, from the files' headers and contents): {listed}{named}. A viewer "
        "will not link the SEG to the source images unless they carry the same UIDs; the "
        "SEG's own plane positions still place it"
    )
