"""The hand-written package list in pyproject.toml must name every package on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_pyproject_lists_every_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "medrecon").rglob("__init__.py")
    }
    on_disk.add("medrecon._pipelines")
    assert listed == on_disk
    assert config["package-dir"] == {"medrecon._pipelines": "pipelines"}
