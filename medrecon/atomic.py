"""Atomic outputs: write to a temporary file beside the target, then rename.

An interrupted run leaves either the whole previous/new file or nothing new,
never a half-written one. The rename is ``os.replace``, atomic on one file system,
which is why the temporary file lives in the target's own folder.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_json", "atomic_write_path", "atomic_write_text"]

logger = logging.getLogger(__name__)

#: Keep temporary names well under the common 255-byte file name limit.
_MAX_STEM = 100


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
        tmp = target.with_name(f".{stem}.tmp-{secrets.token_hex(4)}{suffix}")
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
