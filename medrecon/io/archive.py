"""Safe extraction of zip archives holding DICOM studies."""

from __future__ import annotations

import logging
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from medrecon.errors import FormatError, UnsafeArchiveError

__all__ = ["extracted_zip", "check_zip_members", "member_names"]

log = logging.getLogger(__name__)


def check_zip_members(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse the whole archive if any member could escape the extraction folder."""
    for info in archive.infolist():
        member = info.filename.replace("\\", "/")
        parts = PurePosixPath(member).parts
        if member.startswith("/") or (len(member) > 1 and member[1] == ":") or ".." in parts:
            raise UnsafeArchiveError(
                f"{name}: member {info.filename!r} has an absolute path or '..' and could "
                "write outside the extraction folder; nothing was extracted. Re-create the "
                "archive with relative member paths."
            )
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(
                f"{name}: member {info.filename!r} is a symbolic link; nothing was extracted. "
                "Re-create the archive without links."
            )


@contextmanager
def extracted_zip(path: Path) -> Iterator[Path]:
    """Extract ``path`` into a private temporary folder, removed afterwards."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"{path}: not a readable zip archive ({exc})") from exc
    tmp = Path(tempfile.mkdtemp(prefix="medrecon-zip-"))
    try:
        with archive:
            check_zip_members(archive, str(path))
            try:
                archive.extractall(tmp)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise FormatError(f"{path}: damaged zip archive ({exc})") from exc
        log.debug("extracted %s to %s", path, tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def member_names(text: str, names: dict[str, str]) -> str:
    """``text`` with each extracted file's temporary path replaced by its shown name
    (``names``: path -> ``archive.zip!member``), so messages outlive the extraction."""
    for tmp, shown in names.items():
        if tmp in text:
            text = text.replace(tmp, shown)
    return text
