"""The output folder of one study: may it be replaced, and can it be written?

``--overwrite`` replaces only a folder medrecon wrote: one holding the
``run.json`` of an earlier run, or a cohort study folder holding only the
``error.txt`` of a failed attempt, or an empty folder. Anything else (a folder of
the user's own files named by mistake) is refused, so no option of medrecon can
delete files it did not make. The temporary folder the run writes into is
created first, before any model is loaded, so an unwritable location fails at
once with a one-line error.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medrecon.atomic import create_staging
from medrecon.errors import OutputError, OutputExistsError

__all__ = [
    "MARKER_FILES",
    "check_replaceable",
    "make_staging_folder",
    "staging_folder",
    "write_failure",
    "written_by_medrecon",
]

#: Files whose presence (with medrecon's content) marks a folder as medrecon's.
MARKER_FILES = ("run.json", "error.txt")


def _is_run_json(path: Path) -> bool:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "medrecon" in (record.get("versions") or {})


def _is_cohort_error(path: Path) -> bool:
    # cohort.state.write_error starts every error.txt with these two lines.
    try:
        head = path.read_text(encoding="utf-8", errors="replace").splitlines()[:2]
    except OSError:
        return False
    return len(head) == 2 and head[0].startswith("study: ") and head[1].startswith("input: ")


def written_by_medrecon(folder: Path) -> str | None:
    """Why ``folder`` counts as medrecon's (None when it does not)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    if not entries:
        return "empty"
    if _is_run_json(folder / "run.json"):
        return "holds the run.json of an earlier medrecon run"
    if [e.name for e in entries] == ["error.txt"] and _is_cohort_error(folder / "error.txt"):
        return "holds only the error.txt of a failed cohort attempt"
    return None


def check_replaceable(outdir: Path) -> None:
    """Raise :class:`OutputExistsError` unless ``--overwrite`` may replace ``outdir``."""
    if not outdir.is_dir():
        raise OutputExistsError(f"{outdir} exists and is not a folder; choose another output")
    if written_by_medrecon(outdir) is None:
        names = sorted(e.name for e in outdir.iterdir())
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise OutputExistsError(
            f"{outdir} holds files medrecon did not write ({shown}); --overwrite only replaces "
            "a folder from an earlier medrecon run (one with its run.json). Choose another "
            "output folder, or move those files away yourself."
        )


def make_staging_folder(outdir: Path) -> Path:
    """The temporary folder beside ``outdir`` that the run writes into
    (:func:`medrecon.atomic.create_staging`; :func:`medrecon.atomic.commit_staging`
    moves it into place).

    Raises :class:`OutputError` (one line: where, why, what to do) when the
    location cannot be written: read-only file system, no permission, a file in
    the way.
    """
    blocker = next((p for p in outdir.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(
            f"cannot write the output {outdir}: {blocker} is a file, not a folder; "
            "choose another output folder"
        )
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = create_staging(outdir)
        probe = tmp / ".write-test"
        probe.write_bytes(b"")  # some file systems allow mkdir but not file writes
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"cannot write the output {outdir}: {reason} ({exc.filename or outdir.parent}); "
            "choose an output folder on a writable file system"
        ) from None
    return tmp


@contextmanager
def staging_folder(outdir: Path) -> Iterator[Path]:
    """:func:`make_staging_folder`, removed again if the block raises (the run
    commits it into place itself when it succeeds)."""
    tmp = make_staging_folder(outdir)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_failure(outdir: Path, exc: OSError) -> OutputError:
    """An :class:`OutputError` for a write that failed mid-run (disk full, ...)."""
    reason = exc.strerror or type(exc).__name__
    where = exc.filename or outdir
    return OutputError(
        f"writing the outputs of {outdir} failed: {reason} ({where}); nothing was left in "
        f"{outdir}. Free space or choose another output folder{_space_hint(outdir)}"
    )


def _space_hint(outdir: Path) -> str:
    try:
        fs = os.statvfs(outdir.parent)
    except OSError:
        return ""
    return f" ({fs.f_bavail * fs.f_frsize / 2**20:.0f} MiB free there)"
