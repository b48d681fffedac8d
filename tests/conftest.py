"""Shared test helpers: the real-data folder beside the project."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from pathlib import Path

import pytest

__all__ = ["shared_data_dir"]

SKIP_REASON = (
    "../shared/data not found: real-data tests need the shared data folder beside the project"
)


def shared_data_dir() -> Path | None:
    """``<repo>/../shared/data`` when it exists, else None."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip(SKIP_REASON)
    return path


@pytest.fixture(scope="session")
def ball_pipeline(tmp_path_factory) -> Path:
    """A pipeline YAML whose small UNet was trained here to segment a bright ellipsoid."""
    from pipeline_helpers import train_ball_pipeline

    return train_ball_pipeline(tmp_path_factory.mktemp("ball-pipeline"))


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def nnunet_folder(shared_data, tmp_path_factory) -> Path:
    """A real nnU-Net v2 trainer results folder (tests/nnunet_fixture.py), built once per
    test run and shared by the xdist workers (about a minute of nnU-Net's own tools)."""
    pytest.importorskip("nnunetv2")
    from nnunet_fixture import build_results_folder

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, shared by its workers
    source = (Path(__file__).parent / "nnunet_fixture.py").read_bytes()
    root = base / f"nnunet-fixture-{hashlib.sha256(source).hexdigest()[:12]}"
    with _locked(root.with_suffix(".lock")):
        done = root / "DONE"
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)
            folder = build_results_folder(root, shared_data / "ct-abdomen")
            done.write_text(str(folder))
        return Path(done.read_text())
