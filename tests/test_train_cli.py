"""``medrecon train`` from the command line, and under ``torchrun`` (DDP, gloo, CPU)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from train_helpers import ROOT, crop_case, tiny_pipeline, write_cohort

from medrecon.cli.main import main

UPPER = (slice(0, 122), slice(0, 101), slice(64, 112))
ARGS = ["--epochs", "1", "--iterations", "3", "--patch", "32", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def cohort(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-cohort")
    image, label = crop_case(shared_data, folder, UPPER)
    slabs = {"slab_mm": 12, "every": 3}
    dataset = write_cohort(shared_data, folder, [("upper", image, label)], validation=slabs)
    return dataset, tiny_pipeline(folder), image


def _losses(folder):
    with (folder / "log.csv").open() as fh:
        return [float(row["train_loss"]) for row in csv.DictReader(fh)]


def test_cli_trains_and_its_pipeline_segments(cohort, tmp_path, capsys):
    from medrecon.io import load
    from medrecon.pipeline.segment import Segmenter

    dataset, pipeline, image = cohort
    out = tmp_path / "model"
    args = ["train", str(dataset), "-o", str(out), "--pipeline", str(pipeline), *ARGS]
    assert main([*args, "--val-every", "1"]) == 0
    assert "best epoch 1" in capsys.readouterr().out
    with (out / "log.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert 0.0 <= float(row["val_mean_dice"]) <= 1.0 and "dice_liver" in row
    # The written pipeline runs through the inference engine with its pinned weights.
    seg = Segmenter(out / "pipeline.yaml", device="cpu")(load(image))
    assert seg.labels.shape == load(image).shape
    # Training again into the same folder needs --resume.
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_cli_rejects_an_empty_dataset(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("image,label\n")
    code = main(["train", str(empty), "-o", str(tmp_path / "m"), "--pipeline", "abdomen-ct"])
    assert code == 2
    assert "lists no cases" in capsys.readouterr().err


def test_torchrun_world_size_one_matches_a_single_process_run(cohort, tmp_path):
    """DDP on CPU (gloo) with one process: same patches, same loss as without torchrun."""
    dataset, pipeline, _ = cohort
    common = [str(dataset), "--pipeline", str(pipeline), *ARGS, "--val-every", "0"]
    assert main(["train", *common, "-o", str(tmp_path / "plain")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--standalone"]
    cmd += ["-m", "medrecon.cli.train", *common, "-o", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ddp" / "model.pt").is_file()
    assert _losses(tmp_path / "ddp") == pytest.approx(_losses(tmp_path / "plain"), rel=1e-5)
