"""Small MONAI bundles written by the tests, laid out like the model zoo's.

The *threshold* bundle's ``network_def`` is a 1x1x1 ``torch.nn.Conv3d`` with
known weights: after the [0, 1000] -> [0, 1] intensity window, label 1 is
0.5 < x < 0.9 and label 2 is x > 0.9, so the label map a faithful run must give
is known in closed form (:func:`phantom`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medrecon import Volume

SHAPE = (40, 36, 30)
#: LPS-like axes (i -> left, j -> posterior): Orientationd(RAS) must flip them and back.
AFFINE = np.diag([-2.0, -2.0, 2.0, 1.0])
AFFINE[:3, 3] = (40.0, 36.0, -30.0)
#: Native voxel boxes: label 1 (window 0.60-0.85) and label 2 (window 0.95-1).
BOX_1 = (slice(5, 20), slice(8, 25), slice(4, 14))
BOX_2 = (slice(24, 34), slice(10, 20), slice(16, 26))
#: Conv3d(1, 3, 1): logits (0, 100 x - 50, 200 x - 140) for window-scaled x.
GAIN = np.array([0.0, 100.0, 200.0])
BIAS = np.array([0.0, -50.0, -140.0])

WINDOW = {
    "_target_": "ScaleIntensityRanged",
    "keys": "@image_key",
    "a_min": 0,
    "a_max": 1000,
    "b_min": 0.0,
    "b_max": 1.0,
    "clip": True,
}

THRESHOLD_CONFIG: dict[str, Any] = {
    "imports": ["$import glob", "$import os"],
    "bundle_root": ".",
    "image_key": "image",
    "output_dir": "$@bundle_root + '/eval'",
    "dataset_dir": "/workspace/data",
    "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": {
        "_target_": "torch.nn.Conv3d",
        "in_channels": 1,
        "out_channels": 3,
        "kernel_size": 1,
    },
    "network": "$@network_def.to(@device)",
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key"},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            WINDOW,
            {"_target_": "EnsureTyped", "keys": "@image_key"},
        ],
    },
    "dataset": {
        "_target_": "Dataset",
        "data": "$[{'image': i} for i in @datalist]",
        "transform": "@preprocessing",
    },
    "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1},
    # Smaller than the volume on two axes: several windows, and padding on the third.
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2},
    "postprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {
                "_target_": "Invertd",
                "keys": "pred",
                "transform": "@preprocessing",
                "orig_keys": "@image_key",
                "nearest_interp": False,
                "to_tensor": True,
            },
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir"},
        ],
    },
    "evaluator": {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "val_data_loader": "@dataloader",
        "network": "@network",
        "inferer": "@inferer",
        "postprocessing": "@postprocessing",
        "amp": True,
    },
    "run": ["$@evaluator.run()"],
}

CHANNEL_DEF = {"0": "background", "1": "spleen", "2": "liver"}

METADATA: dict[str, Any] = {
    "version": "0.1.0",
    "name": "Threshold test bundle",
    "description": "A 1x1x1 convolution with known weights",
    "network_data_format": {
        "inputs": {
            "image": {"type": "image", "modality": "CT", "num_channels": 1},
        },
        "outputs": {
            "pred": {"type": "image", "num_channels": 3, "channel_def": CHANNEL_DEF},
        },
    },
}


def config_with(**changes: Any) -> dict[str, Any]:
    """THRESHOLD_CONFIG with top-level keys replaced (None deletes)."""
    config = copy.deepcopy(THRESHOLD_CONFIG)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def steps(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The preprocessing transform list of ``config`` (to edit in place)."""
    return config["preprocessing"]["transforms"]


def make_bundle(
    root: Path,
    config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    fmt: str = "json",
    model: str | None = "model.pt",
) -> Path:
    """Write a bundle folder: configs, metadata and (optionally) the threshold weights."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = copy.deepcopy(THRESHOLD_CONFIG if config is None else config)
    text = json.dumps(config, indent=2) if fmt == "json" else yaml.safe_dump(config)
    (root / "configs" / f"inference.{fmt}").write_text(text)
    meta = METADATA if metadata is None else metadata
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    if model == "model.pt":
        state = {
            "weight": torch.tensor(GAIN, dtype=torch.float32).reshape(3, 1, 1, 1, 1),
            "bias": torch.tensor(BIAS, dtype=torch.float32),
        }
        torch.save(state, root / "models" / "model.pt")
    elif model is not None:
        (root / "models" / model).write_bytes(b"not a real model")
    return root


def phantom(scale: float = 1.0) -> tuple[Volume, np.ndarray]:
    """An int16 volume (background below the window's middle, two bright boxes) and
    the label map the threshold bundle must give for it."""
    rng = np.random.default_rng(7)
    array = rng.integers(-300, 400, SHAPE).astype(np.int16)  # window <= 0.4: background
    array[BOX_1] = rng.integers(600, 850, array[BOX_1].shape)
    array[BOX_2] = rng.integers(950, 1500, array[BOX_2].shape)  # clipped to 1.0
    expected = np.zeros(SHAPE, np.uint8)
    expected[BOX_1], expected[BOX_2] = 1, 2
    return Volume((array * scale).astype(np.int16), AFFINE), expected
