"""Find DICOM files under an input and read their headers (in parallel)."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pydicom

from medrecon.errors import InputError
from medrecon.io.dicom.header import SkipFile, SliceHeader, read_slice_headers
from medrecon.io.report import SkippedFile
from medrecon.progress import counted

__all__ = ["HeaderScan", "dicomdir_files", "list_files", "read_headers"]

log = logging.getLogger(__name__)

_PARALLEL_MIN_FILES = 64  # below this, starting processes costs more than it saves


@dataclass
class HeaderScan:
    """Slice records read from a set of files, plus the files left out."""

    slices: list[SliceHeader] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    n_files: int = 0


def list_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder``, recursively, in a stable order."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("._"))
    return out


def dicomdir_files(dicomdir: Path) -> list[Path]:
    """Image files referenced by a DICOMDIR, resolved against its folder."""
    try:
        ds = pydicom.dcmread(dicomdir)
    except Exception as exc:
        raise InputError(f"{dicomdir}: unreadable DICOMDIR ({exc})") from exc
    root = dicomdir.parent.resolve()
    out = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        candidate = root.joinpath(*parts).resolve()
        if root not in candidate.parents:
            raise InputError(f"{dicomdir}: record points outside its folder ({'/'.join(parts)})")
        out.append(candidate)
    return out


def _read_one(path: str, keep_headers: bool = False) -> tuple[list[SliceHeader], str | None]:
    try:
        return read_slice_headers(path, keep_header=keep_headers), None
    except SkipFile as skip:
        return [], skip.reason
    except OSError as exc:
        return [], f"cannot read file ({exc.strerror or exc})"


def read_headers(
    files: Iterable[Path], workers: int | None = None, *, keep_headers: bool = False
) -> HeaderScan:
    """Read the headers of ``files``; unreadable and non-image files are listed as skipped.

    ``keep_headers``: the slice records carry their file's header, for a DICOM SEG
    of the volume they make (a scan, which makes no volume, leaves them out).
    """
    paths = [str(p) for p in files]
    read_one = partial(_read_one, keep_headers=keep_headers)
    scan = HeaderScan(n_files=len(paths))
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if n_workers > 1 and multiprocessing.current_process().daemon:
        # A daemonic process (a cohort worker) may not start children: read in-process.
        log.debug("reading headers in-process: this is a daemonic worker process")
        n_workers = 1
    if n_workers > 1 and len(paths) >= _PARALLEL_MIN_FILES:
        chunk = max(8, len(paths) // (n_workers * 4))
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            reading = pool.map(read_one, paths, chunksize=chunk)
            results = list(counted(reading, "headers", len(paths)))
    else:
        results = [read_one(p) for p in counted(paths, "headers", len(paths))]
    for path, (slices, reason) in zip(paths, results):
        if reason is not None:
            scan.skipped.append(SkippedFile(path, reason))
        scan.slices.extend(slices)
    log.debug(
        "read %d headers: %d slices, %d skipped", len(paths), len(scan.slices), len(scan.skipped)
    )
    return scan
