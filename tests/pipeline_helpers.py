"""Builders for small pipelines used by the engine tests (real MONAI networks)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = [
    "SMALL_UNET",
    "ball_ct",
    "ellipsoid",
    "threshold_network",
    "train_ball_pipeline",
    "valid_pipeline_dict",
    "write_pipeline",
]

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


def ball_ct(shape, center, radii, rng) -> tuple[np.ndarray, np.ndarray]:
    """A noisy "CT": a 60 HU ellipsoid in -30 HU tissue (noise SD 25 HU); image and mask."""
    mask = ellipsoid(shape, center, radii)
    image = np.where(mask, 60.0, -30.0) + rng.normal(0.0, 25.0, mask.shape)
    return image.astype(np.int16), mask


def train_ball_pipeline(folder: Path, iterations: int = 80) -> Path:
    """Train SMALL_UNET to find the ball in ``ball_ct`` images (about 5 s on 2 CPU
    cores) and write a pipeline file for it; returns the YAML path.

    Patches are 32^3 voxels at the pipeline's 2 mm spacing, scaled by the same
    CT window the pipeline uses, so the test exercises real preprocessing.
    """
    import torch
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    from medrecon.pipeline.weights import sha256_file

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = valid_pipeline_dict()
    lo, hi = data["preprocess"]["intensity"]["window"]
    net = UNet(spatial_dims=3, **SMALL_UNET)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    for _ in range(iterations):
        images, masks = zip(
            *[
                ball_ct((32, 32, 32), rng.uniform(10, 22, 3), rng.uniform(4, 9, 3), rng)
                for _ in range(4)
            ]
        )
        x = np.clip((np.stack(images).astype(np.float32) - lo) / (hi - lo), 0, 1)
        y = np.stack(masks)
        loss = loss_fn(net(torch.from_numpy(x)[:, None]), torch.from_numpy(y)[:, None].long())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    weights = folder / "weights.pt"
    torch.save(net.state_dict(), weights)
    return write_pipeline(folder, valid_pipeline_dict(sha256=sha256_file(weights)))
