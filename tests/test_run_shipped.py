"""The shipped ``abdomen-ct`` model through ``medrecon run``, on the real CT and the sample study.

The CT is the model's training subject, so these are regression checks of the
whole chain (held-out Dice lives in ``tests/test_train_model.py`` and
docs/models.md), not measures of accuracy on new patients.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medrecon.cli.main import main
from medrecon.pipeline.registry import load_pipeline

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct-abdomen"


@pytest.fixture(scope="module")
def shipped():
    pipeline = load_pipeline("abdomen-ct")  # checks the pinned SHA-256 of the weights
    return pipeline


def test_run_on_the_real_ct_finds_every_listed_organ(shared_data, shipped, tmp_path):
    source = shared_data / "ct-abdomen"
    out = tmp_path / "out"
    args = ["run", str(source / "ct.nii.gz"), "-o", str(out), "--device", "cpu"]
    assert main([*args, "--outputs", "labels,stats", "--no-progress"]) == 0
    names = {int(k): v for k, v in json.loads((source / "labels.json").read_text()).items()}
    ref = np.asarray(nib.load(source / "labels.nii.gz").dataobj)
    pred = nib.load(out / "labels.nii.gz")
    np.testing.assert_allclose(pred.affine, nib.load(source / "ct.nii.gz").affine, atol=1e-4)
    pred = np.asarray(pred.dataobj)
    stats = json.loads((out / "stats.json").read_text())["labels"]
    found = {row["name"] for row in stats}
    by_name = {v: k for k, v in names.items()}
    for label in shipped.labels:
        in_ref = ref == by_name[label.name]
        if not in_ref.any():
            continue
        assert label.name in found
        mine = pred == label.value
        dice = 2 * np.logical_and(mine, in_ref).sum() / (mine.sum() + in_ref.sum())
        # Whole-volume Dice on the training subject: a floor that catches a broken chain
        # (the thin 3 mm pancreas measures 0.77, the other organs 0.92-0.96).
        floor = 0.7 if label.name == "pancreas" else 0.85
        assert dice > floor, f"{label.name}: Dice {dice:.3f}"


def test_readme_command_on_the_sample_study(shipped, tmp_path):
    if not SAMPLE.is_dir():
        pytest.skip("sample_data/ct-abdomen is missing")
    out = tmp_path / "results"
    assert main(["run", str(SAMPLE), "-o", str(out), "--no-progress"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["pipeline"]["weights_sha256"] == shipped.weights.sha256
    # No --pipeline: auto read CT from the DICOM header and took abdomen-ct.
    assert record["pipeline"]["name"] == "abdomen-ct"
    assert record["pipeline"]["choice"].startswith("auto: modality CT from the input's header")
    assert set(record["labels_found"]) == {label.name for label in shipped.labels}
    for rel in record["outputs"]:
        assert (out / rel).is_file()
    assert len([r for r in record["outputs"] if r.startswith("meshes/")]) == 10
    assert "seg.dcm" in record["outputs"]
