"""Outputs opened by 3D Slicer's own loading code (PyPI slicer-core, own venv).

slicer-core pins its own VTK, so it lives in a separate virtual environment
(``bash tests/slicer/setup_venv.sh VENV``) and ``tests/slicer/check_outputs.py``
runs there, named by ``MEDRECON_SLICER_PYTHON``. Without it these tests skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import ball_ct
from slicer_outputs import build_outdir, label_codes, oblique, real_case, write_stl_lps

from medrecon.export.colortable import write_color_csv
from medrecon.export.scene import write_mrb
from medrecon.export.segnrrd import read_seg_nrrd
from medrecon.io.nifti import write_nifti
from medrecon.pipeline.config import OUTPUTS
from medrecon.pipeline.parse import read_pipeline_file
from medrecon.study.output_options import OutputOptions
from medrecon.study.runner import run_study
from medrecon.volume import Volume

CHECK = Path(__file__).parent / "slicer" / "check_outputs.py"
WRITE_SEG = Path(__file__).parent / "slicer" / "write_segmentation.py"
ORGANS = ["liver", "spleen", "kidney_left", "aorta", "autochthon_left"]  # the last has no codes


@pytest.fixture(scope="module")
def slicer_python() -> str:
    python = os.environ.get("MEDRECON_SLICER_PYTHON")
    if not python:
        pytest.skip(
            "MEDRECON_SLICER_PYTHON is not set: create the slicer-core venv with "
            "`bash tests/slicer/setup_venv.sh VENV` and export VENV/bin/python"
        )
    if not Path(python).is_file():
        pytest.fail(f"MEDRECON_SLICER_PYTHON={python} does not exist")
    return python


def _slicer_env() -> dict[str, str]:
    # Slicer's Python must not see medrecon's packages.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _check(python: str, outdir: Path, expected: Path | None = None) -> tuple[int, dict]:
    summary = outdir.parent / f"{outdir.name}-summary.json"
    expected = expected or outdir / "expected.json"
    done = subprocess.run(
        [python, str(CHECK), str(outdir), "--expected", str(expected), "--summary", str(summary)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_slicer_env(),
    )
    sys.stderr.write(done.stderr[-4000:])
    if not summary.is_file():
        pytest.fail(f"check script wrote no summary (rc {done.returncode}):\n{done.stdout}")
    return done.returncode, json.loads(summary.read_text())


# Each case also exercises one mesh format through Slicer's model reader.
@pytest.mark.parametrize(
    ("case", "mesh_format"),
    [("ct-ras", "stl"), ("mr-lps", "vtp"), ("ct-oblique", "ply"), ("mr-oblique", "obj")],
)
def test_slicer_loads_outputs(slicer_python, shared_data, tmp_path, case, mesh_format):
    # mr-abdomen is stored LPS on disk: i runs to the left, j to posterior.
    folder = "mr-abdomen" if case.startswith("mr") else "ct-abdomen"
    image, labels, table = real_case(shared_data, folder, ORGANS)
    if case.endswith("oblique"):
        image, labels = oblique(image), oblique(labels)
    outdir = build_outdir(tmp_path / case, image, labels, table, ORGANS, mesh_format)
    write_mrb(outdir, outdir / "scene.mrb")

    rc, summary = _check(slicer_python, outdir)
    assert summary["failures"] == []
    assert rc == 0
    assert summary["segments"] == len(ORGANS)
    assert summary["scene"]["models"] == sorted(ORGANS)
    assert summary["scene"]["version"].startswith("Slicer 5")
    assert summary["bundle"]["models"] == len(ORGANS)
    assert sorted(summary["meshes"]) == sorted(ORGANS)
    for bounds in summary["meshes"].values():
        assert bounds["max_bound_error_mm"] <= bounds["voxel_mm"]


def test_check_catches_a_mesh_in_the_wrong_space(slicer_python, shared_data, tmp_path):
    # Same surface, but mirrored in x: what a mesh written in RAS and read as LPS looks like.
    image, labels, table = real_case(shared_data, "ct-abdomen", ["liver", "spleen"])
    outdir = build_outdir(tmp_path / "bad", image, labels, table, ["liver"])
    mirrored = labels.with_array(labels.array[::-1].copy())
    write_stl_lps(outdir / "meshes" / "liver.stl", mirrored, table[0].value)
    rc, summary = _check(slicer_python, outdir)
    assert rc == 1
    assert any("mesh liver: RAS bounds" in f for f in summary["failures"])


def _original_index(labels, back, mask) -> np.ndarray:
    """Indices on ``labels``' grid of the voxels of ``back`` selected by ``mask``."""
    ijk = labels.ras_to_voxel(back.voxel_to_ras(np.argwhere(mask)))  # through RAS mm
    assert np.abs(ijk - np.round(ijk)).max() < 1e-3  # the grids coincide
    return np.round(ijk).astype(int)


@pytest.mark.parametrize("overlap", [False, True])
def test_reads_what_slicer_writes(slicer_python, shared_data, tmp_path, overlap):
    _, labels, table = real_case(shared_data, "mr-abdomen", ["liver", "spleen", "kidney_left"])
    write_nifti(labels, tmp_path / "labels.nii.gz")
    write_color_csv(tmp_path / "labels.labels.csv", table)
    out = tmp_path / "slicer.seg.nrrd"
    command = [
        slicer_python,
        str(WRITE_SEG),
        str(tmp_path / "labels.nii.gz"),
        str(tmp_path / "labels.labels.csv"),
        str(out),
    ]
    done = subprocess.run(
        command + (["--overlap"] if overlap else []),
        capture_output=True,
        text=True,
        timeout=120,
        env=_slicer_env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]

    back, back_table = read_seg_nrrd(out)
    by_name = {label.name: label for label in back_table}
    for label in table:
        assert by_name[label.name].color == label.color
        ijk = _original_index(labels, back, back.array == by_name[label.name].value)
        expected = np.argwhere(labels.array == label.value)
        if overlap and label.name == "spleen":
            continue  # partly covered by the shifted copy below
        np.testing.assert_array_equal(np.unique(ijk, axis=0), np.unique(expected, axis=0))
    if overlap:
        # Slicer put the overlapping copy in a second layer; the later layer wins.
        copy = _original_index(labels, back, back.array == by_name["shifted copy"].value)
        spleen_value = next(lab.value for lab in table if lab.name == "spleen")
        spleen = np.argwhere(labels.array == spleen_value) + np.array([2, 0, 0])
        assert {tuple(v) for v in copy} == {tuple(v) for v in spleen}
        assert any("shifted copy" in w and "later layer wins" in w for w in back.meta.warnings)


def test_slicer_opens_a_medrecon_run(slicer_python, request, tmp_path):
    # A real `medrecon run`: the small UNet trained in this session segments a ball CT
    # stored on an oblique, left/posterior-running grid. The network is asked for only
    # now, so the test skips without training it when there is no Slicer venv.
    ball_pipeline = request.getfixturevalue("ball_pipeline")
    image, _ = ball_ct((40, 36, 30), (20, 18, 15), (10, 8, 7), np.random.default_rng(3))
    source = oblique(Volume(image, np.diag([-2.0, -1.8, 2.2, 1.0])), degrees=20.0)
    write_nifti(source, tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    every = OutputOptions(outputs=OUTPUTS, mrb=True)
    run_study(
        tmp_path / "ct.nii.gz", out, pipeline=ball_pipeline, device="cpu", output_options=every
    )
    labels = read_pipeline_file(ball_pipeline).labels
    rows = [
        {"value": lab.value, "name": lab.name, "color": list(lab.color), "codes": label_codes(lab)}
        for lab in labels
    ]
    expected = tmp_path / "expected.json"
    # The outputs must stay on the input's own grid.
    expected.write_text(json.dumps({"labels": rows, "affine": source.affine.tolist()}))
    rc, summary = _check(slicer_python, out, expected)
    assert summary["failures"] == []
    assert rc == 0
    assert summary["scene"]["models"] == [lab.name for lab in labels]
    assert summary["bundle"]["models"] == len(labels)
    assert sorted(summary["meshes"]) == [lab.name for lab in labels]
