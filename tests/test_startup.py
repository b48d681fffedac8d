"""Start-up stays light: what each command imports, checked in a fresh interpreter.

Seconds are noisy on a shared machine, so these tests assert on the modules in
``sys.modules`` after the command ran (``benchmarks/bench_load.py --cli`` times it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "ct-abdomen"

#: Never needed to list or convert a study.
HEAVY = ("torch", "monai", "vtk", "highdicom", "SimpleITK", "skimage", "ray", "yaml")

_PROBE = r"""
import contextlib, io, json, sys
from medrecon.cli.main import main
argv = json.loads(sys.argv[1])
code = None
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
top = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"code": code, "modules": top}))
"""


def imported_by(argv: list[str], code: str = _PROBE) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_version_imports_nothing_but_the_standard_library():
    result = imported_by(["--version"])
    assert result["code"] == 0
    third_party = set(result["modules"]) & {"numpy", "pydicom", "nibabel", "scipy", "PIL"}
    assert third_party == set()
    assert not set(HEAVY) & set(result["modules"])


def test_info_imports_only_the_dicom_reader():
    result = imported_by(["info", str(SAMPLE)])
    assert result["code"] == 0
    modules = set(result["modules"])
    assert {"numpy", "pydicom"} <= modules
    # No NIfTI writer, no resampling for a plain axial series, no engine.
    assert not modules & {*HEAVY, "nibabel", "scipy"}


def test_info_on_a_siemens_mosaic_reads_its_csa_header_without_nibabel(shared_data):
    result = imported_by(["info", str(shared_data / "dicom" / "mr-orientation" / "in" / "ax")])
    assert result["code"] == 0
    assert not set(result["modules"]) & {*HEAVY, "nibabel", "scipy"}


def test_convert_imports_no_engine(tmp_path):
    result = imported_by(["convert", str(SAMPLE), "-o", str(tmp_path / "out")])
    assert result["code"] == 0
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 1
    modules = set(result["modules"])
    assert {"numpy", "pydicom", "nibabel"} <= modules
    assert not modules & set(HEAVY)


@pytest.mark.parametrize("command", ["run", "segment", "batch", "evaluate", "pipelines"])
def test_parsing_other_commands_imports_no_engine(command):
    """Each command's parser is built without torch/MONAI/VTK; they load when it runs."""
    probe = r"""
import json, sys
from medrecon.cli.main import _named_command, build_parser
argv = json.loads(sys.argv[1])
build_parser(_named_command(argv)).parse_args(argv)
print(json.dumps({"code": 0, "modules": sorted({n.split(".")[0] for n in sys.modules})}))
"""
    argv = {
        "run": ["run", "in", "-o", "out"],
        "segment": ["segment", "in", "-o", "out.nii.gz"],
        "batch": ["batch", "in", "-o", "out"],
        "evaluate": ["evaluate", "a", "b"],
        "pipelines": ["pipelines"],
    }[command]
    result = imported_by(argv, probe)
    assert not set(result["modules"]) & set(HEAVY), command


def test_import_medrecon_is_lazy_and_its_api_still_works():
    probe = r"""
import json, sys
import medrecon
before = sorted({n.split(".")[0] for n in sys.modules})
from medrecon import Volume, load
volume = load(json.loads(sys.argv[1])[0])
assert isinstance(volume, medrecon.Volume) and medrecon.VolumeMeta is not None
assert callable(medrecon.scan) and callable(medrecon.load_all) and callable(medrecon.run_study)
try:
    medrecon.no_such_name
except AttributeError as exc:
    missing = str(exc)
print(json.dumps({"code": 0, "modules": before, "shape": list(volume.shape), "missing": missing}))
"""
    result = imported_by([str(SAMPLE)], probe)
    assert result["shape"] == [122, 101, 112]
    assert "no_such_name" in result["missing"]
    assert "numpy" not in result["modules"] and "pydicom" not in result["modules"]


def test_help_still_lists_every_command():
    from medrecon.cli.main import _COMMANDS, build_parser

    text = build_parser().format_help()
    for name in _COMMANDS:
        assert name in text
