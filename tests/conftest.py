"""Shared test helpers: the real-data folder beside the project."""

from __future__ import annotations

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
