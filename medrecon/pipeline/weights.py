"""A weights file's SHA-256, hashed once per file per process, and the check that
the file is there and matches the digest its pipeline pins.

A cohort asks for the same digest many times (the pin check at parse and at model
load, then every study's ``run.json``), and a weights file is 20-50 MB. The digest
is kept per resolved path with the file's stat stamp (size, mtime, ctime, inode),
so a file that is rewritten, replaced or copied over is hashed again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from medrecon.errors import PipelineError
from medrecon.pipeline.config import WeightsSpec

__all__ = ["sha256_file", "verify_weights"]

#: A file changed this soon before it was hashed could be changed again within the
#: same filesystem clock tick without its stamp moving, so that digest is not kept
#: (git's "racy" rule; 2 s covers the coarsest common clocks).
_RACY_NS = 2_000_000_000

_lock = threading.Lock()
_known: dict[Path, tuple[tuple[int, ...], str]] = {}


def _hash_file(path: Path) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file; unchanged files are read once per process."""
    resolved = Path(path).resolve()
    st = os.stat(resolved)
    stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    with _lock:
        known = _known.get(resolved)
    if known is not None and known[0] == stamp:
        return known[1]
    started = time.time_ns()
    digest = _hash_file(resolved)
    if st.st_mtime_ns < started - _RACY_NS:
        with _lock:
            _known[resolved] = (stamp, digest)
    return digest


def verify_weights(spec: WeightsSpec, origin: str = "pipeline") -> None:
    """Raise PipelineError when the weights file is missing or its checksum differs."""
    if not spec.path.is_file():
        raise PipelineError(
            f"{origin}: weights file not found: {spec.path}. Install the model's weights "
            "there, or fix 'weights.path' (relative paths are relative to the pipeline file)."
        )
    if spec.sha256 is not None:
        actual = sha256_file(spec.path)
        if actual != spec.sha256:
            raise PipelineError(
                f"{origin}: weights file {spec.path} has SHA-256 {actual}, but the pipeline "
                f"expects {spec.sha256}: the file is corrupt or belongs to another model."
            )
