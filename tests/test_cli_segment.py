"""``medrecon segment`` and ``medrecon pipelines`` in-process, outputs read back with nibabel."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pipeline_helpers import ball_ct

from medrecon import Volume, load
from medrecon.cli.main import main
from medrecon.io.nifti import write_nifti

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct-abdomen"


def test_segment_nifti_writes_labels_and_colour_table(tmp_path, ball_pipeline, capsys):
    image, mask = ball_ct((50, 44, 36), (25, 20, 18), (12, 9, 8), np.random.default_rng(3))
    affine = np.diag([-1.8, -1.8, 2.2, 1.0])
    affine[:3, 3] = (90.0, 60.0, -30.0)
    source = write_nifti(Volume(image, affine), tmp_path / "ct.nii.gz")
    out = tmp_path / "out" / "labels.nii.gz"
    args = ["segment", str(source), "-o", str(out), "--pipeline", str(ball_pipeline)]
    assert main([*args, "--device", "cpu"]) == 0
    assert "labels found: ball (device cpu;" in capsys.readouterr().out
    img = nib.load(out)
    labels = np.asarray(img.dataobj)
    assert labels.dtype == np.uint8 and labels.shape == image.shape
    np.testing.assert_allclose(img.affine, affine)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    dice = 2 * np.logical_and(labels == 1, mask).sum() / ((labels == 1).sum() + mask.sum())
    assert dice > 0.9
    table = (tmp_path / "out" / "labels.ctbl").read_text().splitlines()
    assert "0 background 0 0 0 0" in table and "1 ball 230 80 60 255" in table

    # A second run refuses to overwrite; --overwrite replaces.
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--probabilities", str(tmp_path / "p.nii.gz")]) == 0
    probs = nib.load(tmp_path / "p.nii.gz")
    assert probs.shape == (*image.shape, 2)


def test_segment_dicom_sample_lands_on_its_grid(tmp_path, ball_pipeline):
    if not SAMPLE.is_dir():
        pytest.skip("sample_data/ct-abdomen is missing")
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(SAMPLE), "-o", str(out), "--pipeline", str(ball_pipeline)]) == 0
    volume = load(SAMPLE)
    img = nib.load(out)
    assert img.shape == volume.shape
    np.testing.assert_allclose(img.affine, volume.affine, atol=1e-4)


def test_segment_needs_an_input_and_a_nifti_output(tmp_path, capsys):
    # Without --pipeline the pipeline is auto: the input is read first, to learn its modality.
    assert main(["segment", str(tmp_path), "-o", str(tmp_path / "l.nii.gz")]) == 2
    assert "no files found" in capsys.readouterr().err
    assert main(["segment", str(tmp_path), "-o", str(tmp_path / "l.txt"), "--pipeline", "x"]) == 2
    assert "must be a .nii or .nii.gz file" in capsys.readouterr().err


def test_pipelines_lists_the_shipped_ones(capsys):
    assert main(["pipelines"]) == 0
    text = capsys.readouterr().out
    assert "abdomen-ct" in text and "liver" in text
    assert "abdomen-mr" in text and "modality MR" in text
    assert main(["pipelines", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    abdomen = next(r for r in rows if r["name"] == "abdomen-ct")
    assert abdomen["modality"] == "CT" and abdomen["spacing_mm"] == [3.0, 3.0, 3.0]
    assert abdomen["labels"]["5"] == "liver"
    mr = next(r for r in rows if r["name"] == "abdomen-mr")
    assert mr["modality"] == "MR" and mr["labels"] == abdomen["labels"]
    assert mr["status"] == abdomen["status"]  # one weights file, one status
