"""Builders for small pipelines used by the engine tests (real MONAI networks)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["SMALL_UNET", "ellipsoid", "threshold_network", "valid_pipeline_dict", "write_pipeline"]

#: A MONAI UNet small enough to train in a test on two CPU cores.
SMALL_UNET = {
    "in_channels": 1,
    "out_channels": 2,
    "channels": [8, 16, 32],
    "strides": [2, 2],
    "num_res_units": 1,
}


def valid_pipeline_dict(weights: str = "weights.pt", sha256: str | None = None) -> dict[str, Any]:
    """A complete pipeline mapping; tests break one key at a time."""
    data = {
        "name": "test-ball",
        "description": "bright ellipsoid on a dark background",
        "version": "1",
        "modality": "CT",
        "labels": {
            1: {
                "name": "ball",
                "color": [230, 80, 60],
                "category": {
                    "code": "123037004",
                    "scheme": "SCT",
                    "meaning": "Anatomical Structure",
                },
                "type": {"code": "10200004", "meaning": "Liver"},
            }
        },
        "preprocess": {
            "orientation": "RAS",
            "spacing": [2.0, 2.0, 2.0],
            "intensity": {"mode": "ct_window", "window": [-100, 200], "clip": True},
            "crop_foreground": True,
        },
        "network": {"name": "UNet", "args": copy.deepcopy(SMALL_UNET)},
        "weights": {"path": weights, "sha256": sha256},
        "inference": {"roi_size": [32, 32, 32], "overlap": 0.25, "sw_batch_size": 2},
        "refine": [{"step": "keep_largest_component", "labels": ["ball"]}],
        "outputs": ["labels", "stats"],
    }
    if sha256 is None:
        del data["weights"]["sha256"]
    return data


def write_pipeline(folder: Path, data: dict[str, Any], name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def threshold_network():
    """A 1x1x1 convolution whose label-1 logit is 20 * (x - 0.5): "foreground where
    the scaled intensity is above one half". A real torch module with exact answers."""
    import torch

    conv = torch.nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([-10.0, 10.0]).reshape(2, 1, 1, 1, 1)
        conv.bias[:] = torch.tensor([5.0, -5.0])
    return conv


def ellipsoid(shape, center, radii) -> np.ndarray:
    """Boolean ellipsoid mask (voxel units)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))
    return dist <= 1.0
