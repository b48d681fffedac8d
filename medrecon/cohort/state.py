"""What the cohort knows about each study, on disk and in memory.

Resume is decided by the study's own folder: ``run.json`` saying complete with
every file it lists present (``run_study`` writes the folder atomically, so a
killed run leaves no such folder). A failed study's folder holds only
``error.txt``. The cohort lock keeps two runs from writing one OUTDIR, and
:func:`clean_partial` removes what a killed run left half-way (temporary folders
and files, which never look complete).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from medrecon.atomic import atomic_write_text, partial_target
from medrecon.errors import InputError
from medrecon.study.record import is_complete

__all__ = [
    "COMPLETE",
    "ERROR_TXT",
    "FAILED",
    "LOCK_NAME",
    "STAGING",
    "StudyRecord",
    "clean_attempt",
    "clean_partial",
    "cohort_lock",
    "links_folder",
    "record_from_outdir",
    "study_complete",
    "write_error",
]

logger = logging.getLogger(__name__)

COMPLETE = "complete"
FAILED = "failed"
ERROR_TXT = "error.txt"
LOCK_NAME = "cohort.lock"
#: Private folder of links for studies split out of one DICOM folder.
STAGING = ".staging"


@dataclass
class StudyRecord:
    """One study's outcome: a row of cohort.csv."""

    study: str
    status: str
    attempts: int = 0
    resumed: bool = False
    input: str = ""
    input_kind: str = ""
    series_uid: str = ""
    series_number: int | None = None
    #: The pipeline that segmented it (with ``auto``, one per modality).
    pipeline: str = ""
    device: str = ""
    worker: str = ""
    seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Label name -> mL; None when the study's outputs had no stats (not measured).
    volumes_ml: dict[str, float] | None = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    traceback: str = ""
    #: False for errors the input itself causes (retrying cannot help).
    retryable: bool = True


def lost_attempt(task, worker: str, started: float, error: str) -> list[StudyRecord]:
    """The failed record of the study a dead worker held (``task`` = (study, attempt)),
    or nothing when it held none; both engines report a lost worker this way."""
    import time

    if task is None:
        return []
    study, attempt = task
    return [
        StudyRecord(
            study=study.id,
            status=FAILED,
            attempts=attempt,
            input=str(study.path),
            worker=worker,
            seconds=round(time.perf_counter() - started, 3),
            error=error,
        )
    ]


def links_folder(outdir: Path, study_id: str, pid: int | None = None) -> Path:
    """``OUTDIR/.staging/<study>-<pid>``: the private folder of links through which
    worker ``pid`` (default: this process) reads a split study's files."""
    return outdir / STAGING / f"{study_id}-{os.getpid() if pid is None else pid}"


def _is_links_folder_of(name: str, study_id: str) -> bool:
    # <id>-<pid>, as links_folder names it; not study <id>-2's (its pid part follows "-2-").
    head, _, pid = name.rpartition("-")
    return head == study_id and pid.isdigit()


def study_complete(study_dir: Path) -> bool:
    """True when ``run_study`` finished this folder
    (:func:`medrecon.study.record.is_complete`)."""
    return is_complete(study_dir)


def _stats_volumes(study_dir: Path) -> dict[str, float] | None:
    """Label name -> volume (mL) from the study's stats.json, in its order; None
    when the study has no stats.json."""
    path = study_dir / "stats.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # medrecon.export.stats.write_stats writes {"meta": ..., "units": ..., "labels": rows}.
    rows = data.get("labels", []) if isinstance(data, dict) else []
    return {
        str(r["name"]): float(r["volume_ml"])
        for r in rows
        if isinstance(r, dict) and "name" in r and r.get("volume_ml") is not None
    }


def record_from_outdir(study, study_dir: Path) -> StudyRecord:
    """The row of a :class:`~medrecon.cohort.studies.Study` finished by an earlier run,
    from its run.json and stats.json."""
    run = json.loads((study_dir / "run.json").read_text(encoding="utf-8"))
    source = run.get("input", {})
    timings = run.get("timings_s", {})
    return StudyRecord(
        study=study.id,
        status=COMPLETE,
        resumed=True,
        input=str(study.path),  # run.json names the links folder for a split DICOM study
        input_kind="dicom" if study.files else str(source.get("kind", "")),
        series_uid=str(source.get("series_uid") or ""),
        series_number=source.get("series_number"),
        pipeline=str(run.get("pipeline", {}).get("name") or ""),
        device=str(run.get("device", "")),
        seconds=None,
        timings={k: float(v) for k, v in timings.items()},
        volumes_ml=_stats_volumes(study_dir),
        warnings=list(run.get("warnings", [])),
    )


def write_error(study_dir: Path, record: StudyRecord, source: str) -> Path:
    """``study_dir/error.txt``: what failed, how often it was tried, the traceback."""
    study_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"study: {record.study}",
        f"input: {source}",
        f"attempts: {record.attempts}",
        f"worker: {record.worker}",
        f"error: {record.error}",
    ]
    if not record.retryable:
        lines.append("not retried: the input itself is at fault; fix it and run batch again")
    text = "\n".join(lines) + "\n\n" + (record.traceback or "(no traceback)") + "\n"
    return atomic_write_text(study_dir / ERROR_TXT, text)


def clean_partial(outdir: Path, study_ids: Iterable[str]) -> int:
    """Delete what a killed run left half-way: temporary folders/files of these
    studies (beside and inside their folders), of cohort.csv, and the staging
    folder. Only names this cohort makes are touched. Returns how many went."""
    ids = set(study_ids)
    removed = 0
    candidates = [outdir / STAGING] if (outdir / STAGING).exists() else []
    for entry in outdir.iterdir():
        if partial_target(entry.name) in ids | {"cohort"}:
            candidates.append(entry)
        elif entry.name in ids and entry.is_dir():
            candidates.extend(p for p in entry.iterdir() if partial_target(p.name) is not None)
    for path in candidates:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    if removed:
        logger.info("%s: removed %d partial item(s) of an interrupted run", outdir, removed)
    return removed


def clean_attempt(outdir: Path, study_id: str) -> None:
    """After a failed attempt (a killed worker leaves its temporary folder): remove
    that study's temporary folder(s) and links. A set-aside ``.old-`` result stays
    for the start-of-run clean-up, so a crash mid ``--force`` cannot lose it early."""
    doomed = [p for p in outdir.iterdir() if partial_target(p.name, staging_only=True) == study_id]
    staging = outdir / STAGING
    if staging.is_dir():
        doomed += [p for p in staging.iterdir() if _is_links_folder_of(p.name, study_id)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def cohort_lock(outdir: Path) -> Iterator[Path]:
    """Hold OUTDIR/cohort.lock so a second run on the same OUTDIR stops with a clear
    error. The OS drops the lock when the process dies, so a killed run never
    leaves it stuck. Where ``fcntl`` is missing (Windows) no lock is taken."""
    path = outdir / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise InputError(
                f"{outdir} is being written by another `medrecon batch` (pid {holder}); wait "
                "for it to finish or choose another output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)
