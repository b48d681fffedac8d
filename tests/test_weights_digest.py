"""A weights file is hashed once per process: parse, model load and every run.json
share one digest, and a rewritten file is hashed again."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import SMALL_UNET, ball_ct, valid_pipeline_dict, write_pipeline

from medrecon.errors import PipelineError
from medrecon.io.nifti import write_nifti
from medrecon.pipeline import weights as weights_module
from medrecon.pipeline.parse import read_pipeline_file
from medrecon.pipeline.weights import sha256_file
from medrecon.study.runner import run_study
from medrecon.volume import Volume


@pytest.fixture
def hashes(monkeypatch) -> list[Path]:
    """Every file the digest function actually reads, in order (a fresh memo)."""
    seen: list[Path] = []
    real = weights_module._hash_file

    def counting(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(weights_module, "_known", {})
    monkeypatch.setattr(weights_module, "_hash_file", counting)
    return seen


def _save_weights(path: Path, seed: int, mtime_s: float) -> str:
    """Random SMALL_UNET weights at ``path``, dated ``mtime_s``; their SHA-256."""
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    torch.save(UNet(spatial_dims=3, **SMALL_UNET).state_dict(), path)
    os.utime(path, ns=(int(mtime_s * 1e9), int(mtime_s * 1e9)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_hash_across_parse_load_and_run_records_and_again_once_rewritten(hashes, tmp_path):
    weights = tmp_path / "weights.pt"
    digest = _save_weights(weights, seed=0, mtime_s=time.time() - 600)
    yaml_path = write_pipeline(tmp_path, valid_pipeline_dict(sha256=digest))
    image, _ = ball_ct((40, 36, 30), (20, 18, 15), (10, 8, 7), np.random.default_rng(1))
    source = write_nifti(Volume(image, np.diag([-2.0, -2.0, 2.0, 1.0])), tmp_path / "c.nii.gz")

    assert read_pipeline_file(yaml_path).weights.sha256 == digest  # parse checks the pin
    records = []
    for name in ("run1", "run2"):  # each run parses, loads the model and writes run.json
        result = run_study(source, tmp_path / name, model=yaml_path, device="cpu")
        records.append(json.loads(result.run_json.read_text()))
    assert [r["pipeline"]["weights_sha256"] for r in records] == [digest, digest]
    assert hashes == [weights.resolve()]

    # Rewritten in place: another stamp, so it is read again and the pin refuses it.
    other = _save_weights(weights, seed=1, mtime_s=time.time() - 300)
    assert other != digest
    with pytest.raises(PipelineError) as excinfo:
        read_pipeline_file(yaml_path)
    message = str(excinfo.value)
    assert f"has SHA-256 {other}, but the pipeline expects {digest}" in message
    assert "corrupt or belongs to another model" in message
    assert sha256_file(weights) == other
    assert hashes == [weights.resolve(), weights.resolve()]


def test_a_file_dated_now_or_later_is_hashed_every_time(hashes, tmp_path):
    """Its stamp could survive one more write in the same clock tick, so its digest is
    not kept."""
    path = tmp_path / "fresh.pt"
    path.write_bytes(b"weights")
    later = time.time_ns() + 60 * 10**9
    os.utime(path, ns=(later, later))
    assert sha256_file(path) == sha256_file(path) == hashlib.sha256(b"weights").hexdigest()
    assert len(hashes) == 2
