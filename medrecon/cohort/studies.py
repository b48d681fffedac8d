"""Which studies a cohort holds: a folder of study folders, one DICOM folder split by
StudyInstanceUID, or a CSV/JSON manifest.

Every study gets an ID that is safe as a folder name and unique in the cohort
(case-insensitively, for macOS and Windows file systems). IDs depend only on the
input, in a stable order, so a restarted cohort maps each study to the same
output folder and resume works.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrecon.errors import InputError
from medrecon.study.output_options import OUTPUT_OPTIONS, OutputOptions

__all__ = [
    "LAYOUTS",
    "STUDY_OPTIONS",
    "Study",
    "discover_studies",
    "read_manifest",
    "sanitise_id",
    "study_output_options",
    "unique_ids",
]

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "folders", "dicom")

#: Per-study options a manifest may set: the series to read, and the output options
#: (:class:`~medrecon.study.output_options.OutputOptions`' fields) that differ for this study.
STUDY_OPTIONS = ("series", *OUTPUT_OPTIONS)

_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".zip")
_ID_COLUMNS = ("study_id", "study", "id")
_MAX_ID = 80
#: Names the cohort itself writes into OUTDIR; a study may not take them.
_RESERVED = {"cohort.csv", "cohort.log", "cohort.lock"}


@dataclass(frozen=True)
class Study:
    """One study of a cohort.

    ``path`` is what ``run_study`` reads. For a study split out of one shared
    DICOM folder, ``files`` lists its files and ``path`` is that folder; the
    worker then reads the files through a private folder of links.
    ``options`` are the manifest's per-study :data:`STUDY_OPTIONS` (parsed, only
    those given); ``extra`` are the manifest's other columns, copied to cohort.csv.
    """

    id: str
    path: Path
    source: str
    files: tuple[Path, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, str] = field(default_factory=dict)


def sanitise_id(text: str) -> str:
    """A folder name from ``text``: letters, digits, ``.``, ``_``, ``-`` only."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")[:_MAX_ID].rstrip("._-")
    return safe or "study"


def unique_ids(names: Iterable[str]) -> list[str]:
    """Sanitised, unique IDs in the given order; a repeat gets ``-2``, ``-3``, ..."""
    taken: set[str] = set()
    out = []
    for name in names:
        base = sanitise_id(name)
        candidate, n = base, 1
        while candidate.lower() in taken or candidate.lower() in _RESERVED:
            n += 1
            candidate = f"{base}-{n}"
        if candidate != name:
            logger.info("study %r is named %r in the output", name, candidate)
        taken.add(candidate.lower())
        out.append(candidate)
    return out


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_volume_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_VOLUME_SUFFIXES)


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _folder_studies(folder: Path, entries: list[Path]) -> list[Study]:
    chosen = [p for p in entries if p.is_dir() or _is_volume_file(p)]
    ignored = [p.name for p in entries if p not in chosen]
    if ignored:
        logger.warning(
            "%s: %d loose file(s) beside the study folders are not studies and are ignored (%s)",
            folder,
            len(ignored),
            ", ".join(ignored[:5]),
        )
    names = [_stem(p) for p in chosen]
    return [Study(sid, _study_source(p), p.name) for sid, p in zip(unique_ids(names), chosen)]


def _study_source(path: Path) -> Path:
    """What ``run_study`` reads for a study entry: a folder holding one NIfTI/NRRD/MHA
    volume (and perhaps sidecars) is that file; any other folder is read as DICOM."""
    if not path.is_dir():
        return path
    files = [p for p in _visible(path) if p.is_file()]
    volumes = [p for p in files if _is_volume_file(p) and not p.name.lower().endswith(".zip")]
    others = [p for p in files if p not in volumes and p.suffix.lower() not in (".json", ".txt")]
    if len(volumes) == 1 and not others and not any(p.is_dir() for p in _visible(path)):
        return volumes[0]
    return path


def _study_uid(path: Path) -> tuple[str | None, bool]:
    """The file's StudyInstanceUID, or for an image whose UID is blank or removed
    (de-identified) one derived from its study-level keys; and whether it was derived."""
    import pydicom

    from medrecon.io.dicom.uids import STUDY_FALLBACK_KEYS, study_fallback_uid

    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=[*STUDY_FALLBACK_KEYS, "Rows"]
        )
        uid = str(ds.get("StudyInstanceUID", "") or "").strip()
        if uid:
            return uid, False
        return (study_fallback_uid(ds), True) if "Rows" in ds else (None, False)
    except Exception:  # not DICOM or unreadable: the split ignores it, with a count
        return None, False


def _dicom_studies(folder: Path) -> list[Study]:
    """One study per StudyInstanceUID among the files under ``folder``."""
    from medrecon.io.dicom.scan import list_files

    by_uid: dict[str, list[Path]] = {}
    unreadable = derived = 0
    for path in list_files(folder):
        uid, made = _study_uid(path)
        if uid is None:
            unreadable += 1
            continue
        derived += made
        by_uid.setdefault(uid, []).append(path)
    if derived:
        logger.warning(
            "%s: %d image file(s) have no StudyInstanceUID (de-identified?); grouped into "
            "studies by PatientID, StudyDate, StudyTime, StudyID and AccessionNumber",
            folder,
            derived,
        )
    if unreadable:
        logger.warning(
            "%s: %d file(s) are not DICOM or have no StudyInstanceUID; left out", folder, unreadable
        )
    if not by_uid:
        raise InputError(
            f"{folder}: no DICOM study found (no file with a StudyInstanceUID). Point "
            "`medrecon batch` at a folder of study folders, a DICOM folder or a manifest."
        )
    uids = sorted(by_uid)
    ids = unique_ids(uids)
    return [Study(sid, folder, uid, files=tuple(by_uid[uid])) for sid, uid in zip(ids, uids)]


def discover_studies(input_path: str | os.PathLike[str], *, layout: str = "auto") -> list[Study]:
    """The studies under ``input_path``.

    A ``.csv`` or ``.json`` file is a manifest (:func:`read_manifest`). A folder
    is, with ``layout="auto"``: one study per subfolder and per NIfTI/NRRD/MHA/zip
    file when it has any; otherwise a DICOM folder split by StudyInstanceUID.
    ``layout="folders"`` or ``"dicom"`` forces one reading (``dicom`` suits a
    nested DICOM tree holding many studies).
    """
    path = Path(input_path)
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() in (".csv", ".json"):
            return read_manifest(path)
        raise InputError(
            f"{path}: a cohort is a folder of studies, a DICOM folder or a .csv/.json manifest"
        )
    entries = _visible(path)
    has_studies = any(p.is_dir() or _is_volume_file(p) for p in entries)
    if layout == "dicom" or (layout == "auto" and not has_studies):
        return _dicom_studies(path)
    if not has_studies:
        raise InputError(f"{path}: no study folders or volume files in it")
    return _folder_studies(path, entries)


def _parse_bool(text: str, where: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise InputError(f"{where}: {text!r} is not yes/no")


def study_output_options(base: OutputOptions, study: Study) -> OutputOptions:
    """``base`` with the output options ``study``'s manifest row sets (checked again:
    they may clash with the cohort's own, e.g. ``mrb`` and ``--outputs``)."""
    return base.with_overrides(_output_changes(study.options), where=f"study {study.id}")


def _output_changes(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in OUTPUT_OPTIONS}


def _options(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The manifest's per-study options; empty cells mean the default. The output
    options are checked here, so a bad value names its row before any study runs."""
    out: dict[str, Any] = {}
    for key in STUDY_OPTIONS:
        value = row.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if key in ("dicom_seg", "mrb"):
            out[key] = value if isinstance(value, bool) else _parse_bool(value, f"{where} {key}")
        elif key == "outputs":
            out[key] = (
                list(value) if isinstance(value, list) else re.split(r"[\s;,]+", value.strip())
            )
        else:
            out[key] = str(value).strip()
    OutputOptions().with_overrides(_output_changes(out), where=where)
    return out


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data.get("studies") if isinstance(data, dict) else data
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise InputError(
                    f"{path}: a JSON manifest is a list of objects (or {{'studies': [...]}}) "
                    'each with "path" and optionally "study_id", "series", ...'
                )
            return rows
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from exc


def read_manifest(path: str | os.PathLike[str]) -> list[Study]:
    """Studies listed in a CSV or JSON manifest.

    Columns/keys: ``path`` (required; relative paths are relative to the
    manifest's folder), ``study_id`` (or ``study``/``id``; default: the path's
    name), and optionally :data:`STUDY_OPTIONS`. Other columns (subject, group,
    ...) are carried into cohort.csv. Rows keep the manifest's order.
    """
    manifest = Path(path)
    rows = _manifest_rows(manifest)
    if not rows:
        raise InputError(f"{manifest}: the manifest lists no studies")
    studies_in: list[tuple[str, Path, dict, dict]] = []
    for n, row in enumerate(rows, start=2 if manifest.suffix.lower() == ".csv" else 1):
        where = f"{manifest} row {n}"
        raw_path = str(row.get("path") or "").strip()
        if not raw_path:
            raise InputError(f"{where}: no 'path'; every study needs the path of its files")
        study_path = Path(raw_path).expanduser()
        if not study_path.is_absolute():
            study_path = manifest.parent / study_path
        study_path = _study_source(study_path) if study_path.is_dir() else study_path
        name = next((str(row[c]).strip() for c in _ID_COLUMNS if str(row.get(c) or "").strip()), "")
        known = {"path", *_ID_COLUMNS, *STUDY_OPTIONS}
        extra = {k: "" if v is None else str(v) for k, v in row.items() if k not in known and k}
        studies_in.append((name or _stem(study_path), study_path, _options(row, where), extra))
    ids = unique_ids(s[0] for s in studies_in)
    return [
        Study(sid, p, name, options=opts, extra=extra)
        for sid, (name, p, opts, extra) in zip(ids, studies_in)
    ]
