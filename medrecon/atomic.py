"""Atomic outputs: write to a temporary file or folder beside the target, then rename.

An interrupted run leaves either the whole previous/new file or folder or nothing
new, never a half-written one. The rename is atomic on one file system, which is
why the temporary entry lives in the target's own folder. The temporary names are
made here and only here, so :func:`partial_target` can tell what an interrupted
run left behind (a cohort deletes those before it starts again).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_json",
    "atomic_write_path",
    "atomic_write_text",
    "commit_staging",
    "create_staging",
    "partial_target",
]

logger = logging.getLogger(__name__)

#: Keep temporary names well under the common 255-byte file name limit.
_MAX_STEM = 100

# Temporary names: ".<name>.tmp-<token>[<suffixes>]" for what is being written (a
# file's suffixes stay last so writers that choose a format from them still work),
# ".<name>.old-<pid>-<ns>" for a folder set aside while its replacement moves in.
_WRITING = ".tmp-"
_SET_ASIDE = ".old-"
# The tokens are mkdtemp's letters, digits and "_", token_hex's hex digits, or pid-ns.
_TEMPORARY = re.compile(rf"^\.(.+)(?:{re.escape(_WRITING)}|{re.escape(_SET_ASIDE)})[0-9A-Za-z_-]+")
_STAGING = re.compile(rf"^\.(.+){re.escape(_WRITING)}[0-9A-Za-z_-]+")


def _split_suffixes(name: str) -> tuple[str, str]:
    """``"ct.nii.gz"`` -> ``("ct", ".nii.gz")``; a leading dot is part of the stem."""
    suffix = "".join(Path(name).suffixes)
    return name[: len(name) - len(suffix)], suffix


@contextmanager
def atomic_write_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The temporary name is ``.<stem>.tmp-XXXXXXXX<suffixes>`` (for example
    ``.ct.tmp-1a2b3c4d.nii.gz``) so writers that choose a format from the
    extension still work. The file is created empty (with the usual umask
    permissions); on any error it is deleted and the error re-raised.
    """
    target = Path(path)
    stem, suffix = _split_suffixes(target.name)
    stem = stem.lstrip(".")[:_MAX_STEM]
    while True:
        tmp = target.with_name(f".{stem}{_WRITING}{secrets.token_hex(4)}{suffix}")
        try:
            # O_EXCL: never reuse a name another writer holds; 0o666 honours the umask.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.debug("wrote %s", target)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation)."""
    with atomic_write_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON (indent 2, keys in given order, UTF-8, trailing newline).

    NumPy scalars and arrays and paths are written as plain JSON values.
    """
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False, default=_json_default)
    return atomic_write_text(path, text + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def create_staging(target: str | os.PathLike[str]) -> Path:
    """A new, empty folder ``.<name>.tmp-XXXXXXXX`` beside ``target`` to write into,
    then :func:`commit_staging`; raises :class:`OSError` where that cannot be made."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_WRITING}", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    return tmp


def commit_staging(staging: Path, target: str | os.PathLike[str]) -> None:
    """Rename the finished ``staging`` folder to ``target``.

    An old ``target`` is renamed aside first (``.<name>.old-PID-NS``) and deleted
    only once the new one is in place; if the new one cannot be moved in, the old
    one is put back before the error is raised. A process killed between the two
    renames leaves both whole, under their temporary names.
    """
    target = Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}{_SET_ASIDE}{os.getpid()}-{time.time_ns()}")
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        if old is not None:
            try:
                os.rename(old, target)
            except OSError:  # the old one stays whole, set aside; report the first error
                logger.warning("could not put %s back; it is at %s", target, old)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.debug("moved %s into place", target)


def partial_target(name: str, *, staging_only: bool = False) -> str | None:
    """The name whose temporary entry ``name`` is, or None when it is not one.

    ``".ct-ras.tmp-k3j_x9"`` (a staging folder) -> ``"ct-ras"``; a temporary file
    gives its target's stem: ``".stats.tmp-1a2b3c4d.json"`` -> ``"stats"``.
    ``staging_only`` leaves out old folders set aside by :func:`commit_staging`.
    """
    match = (_STAGING if staging_only else _TEMPORARY).match(name)
    return match.group(1) if match else None
