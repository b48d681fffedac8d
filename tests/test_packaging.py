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


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_package_data_holds_every_shipped_pipeline_and_its_weights():
    """Each shipped YAML and the weights file it names (shared ones included) match
    medrecon._pipelines' package-data patterns, so a wheel carries them."""
    import fnmatch

    import tomllib
    import yaml

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["medrecon._pipelines"]
    folder = ROOT / "pipelines"
    needed = set()
    for path in sorted(folder.glob("*.y*ml")):
        needed.add(path.name)
        data = yaml.safe_load(path.read_text())
        for weights in (data.get("weights"), (data.get("coarse") or {}).get("weights")):
            if weights:
                target = (folder / weights["path"]).resolve()
                assert target.parent == folder.resolve(), f"{path.name}: weights outside pipelines/"
                needed.add(target.name)
    needed.add("superres-2d.pt")  # medrecon.superres.weights.DEFAULT_WEIGHTS
    assert {"abdomen-ct.yaml", "abdomen-mr.yaml", "abdomen-ct.pt"} <= needed
    for name in sorted(needed):
        assert any(fnmatch.fnmatch(name, pat) for pat in patterns), f"{name} is not package data"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_package_data_holds_every_data_file_inside_medrecon():
    """Each non-Python file under medrecon/ (the terminology table, task lists,
    py.typed) matches its own package's package-data patterns, so a wheel carries it."""
    import fnmatch

    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = [
        p
        for p in (ROOT / "medrecon").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert ROOT / "medrecon" / "labels" / "terminology_totalsegmentator.tsv" in data
    for path in data:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        patterns = config["package-data"].get(package, [])
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns), f"{path} is not package data"
