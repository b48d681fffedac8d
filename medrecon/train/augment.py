"""Patch sampling and augmentation: MONAI dictionary transforms on ``image``/``label``.

The chain: a patch larger than the network's (so rotations and zooms rarely reach
past its edge) centred on a class drawn with equal odds among the labels present,
then one affine resampling (rotation, zoom, shear) to the network's patch size, an
occasional smooth elastic deformation, optional flips, and intensity changes (gamma,
contrast, brightness, noise, blur) on the image only.

Flipping across the left-right axis turns a left kidney into a right one, so a flip
on that axis also swaps the values of every ``X_left``/``X_right`` label pair.
Flips are off by default: in the abdomen the liver's side is information, and a
mirrored patient would teach the network that it is not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from medrecon.errors import InputError
from medrecon.pipeline.config import Pipeline

__all__ = [
    "AugmentConfig",
    "build_patch_chain",
    "left_right_pairs",
    "rand_flip_swap",
    "rand_spatial",
]

logger = logging.getLogger(__name__)

KEYS = ("image", "label")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; a dataset's ``augment`` mapping overrides any field."""

    #: Extra voxels on each side of the sampled patch before the affine resampling.
    margin: int = 8
    affine_prob: float = 0.9
    rotate_deg: float = 15.0
    zoom: float = 0.15
    shear: float = 0.05
    elastic_prob: float = 0.3
    #: Control points per axis of the elastic displacement field.
    elastic_points: int = 5
    #: Largest displacement of a control point, in voxels (per axis).
    elastic_voxels: float = 3.0
    #: Spatial axes (0, 1, 2 of the model grid) that may be flipped, each with flip_prob.
    flip_axes: tuple[int, ...] = ()
    flip_prob: float = 0.5
    #: The model grid's left-right axis (RAS orientation: 0).
    left_right_axis: int = 0
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast_prob: float = 0.3
    contrast: float = 0.15
    brightness_prob: float = 0.3
    brightness: float = 0.1
    noise_prob: float = 0.2
    noise_std: float = 0.04
    blur_prob: float = 0.15

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], where: str = "augment") -> AugmentConfig:
        names = {f.name: f for f in fields(cls)}
        if unknown := set(raw) - set(names):
            raise InputError(f"{where}: unknown augmentation keys {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)


def left_right_pairs(pipeline: Pipeline) -> list[tuple[int, int]]:
    """(value, value) of every ``X_left``/``X_right`` label pair in the pipeline."""
    by_name = {lab.name: lab.value for lab in pipeline.labels}
    return [
        (value, by_name[name[: -len("_left")] + "_right"])
        for name, value in by_name.items()
        if name.endswith("_left") and name[: -len("_left")] + "_right" in by_name
    ]


def rand_flip_swap(axes, prob: float, pairs, left_right_axis: int = 0) -> Any:
    """A MONAI random transform: flip ``image`` and ``label`` along each of ``axes`` with
    probability ``prob``; a flip along ``left_right_axis`` also swaps the paired labels."""
    import torch
    from monai.transforms import MapTransform, Randomizable

    swap = torch.arange(256, dtype=torch.uint8)
    for a, b in pairs:
        swap[a], swap[b] = b, a

    class RandFlipSwapd(Randomizable, MapTransform):
        def __init__(self) -> None:
            MapTransform.__init__(self, keys=KEYS)

        def randomize(self, data=None) -> None:
            self.flips = [axis for axis in axes if self.R.rand() < prob]

        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            self.randomize()
            out = dict(data)
            for axis in self.flips:
                for key in KEYS:
                    out[key] = torch.flip(torch.as_tensor(out[key]), dims=[axis + 1])
                if axis == left_right_axis:
                    out["label"] = swap[out["label"].long()].to(out["label"].dtype)
            return out

    return RandFlipSwapd()


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rand_spatial(config: AugmentConfig, patch: tuple[int, int, int]) -> Any:
    """A MONAI random transform: the patch-sized centre of a rotated, zoomed, sheared
    and (sometimes) elastically deformed larger patch, in one resampling per key.

    The elastic part is random displacements (up to ``elastic_voxels``) on a coarse
    ``elastic_points``^3 lattice interpolated trilinearly to every voxel: smooth like a
    Gaussian-filtered dense field but a few milliseconds on a CPU, where MONAI's
    ``RandAffined`` + ``Rand3DElasticd`` on numpy-backed data cost most of a second.
    """
    import torch
    import torch.nn.functional as F
    from monai.transforms import MapTransform, Randomizable

    out_shape = tuple(int(n) for n in patch)
    axes = [torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in out_shape]
    centred = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (X, Y, Z, 3)
    rot = np.deg2rad(config.rotate_deg)

    class RandSpatiald(Randomizable, MapTransform):
        def __init__(self) -> None:
            MapTransform.__init__(self, keys=KEYS)

        def randomize(self, data=None) -> None:
            matrix = np.eye(3)
            if self.R.rand() < config.affine_prob:
                shear = np.eye(3) + np.triu(self.R.uniform(-1, 1, (3, 3)), 1) * config.shear
                zoom = np.diag(self.R.uniform(1 - config.zoom, 1 + config.zoom, 3))
                matrix = _rotation(self.R.uniform(-rot, rot, 3)) @ zoom @ shear
            self.matrix = matrix
            n = config.elastic_points
            self.lattice = (
                self.R.uniform(-1.0, 1.0, (1, 3, n, n, n)) * config.elastic_voxels
                if self.R.rand() < config.elastic_prob
                else None
            )

        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            self.randomize()
            out = dict(data)
            in_shape = torch.tensor(torch.as_tensor(out["image"]).shape[1:], dtype=torch.float32)
            matrix = torch.from_numpy(self.matrix.T).float()
            grid = centred @ matrix + (in_shape - 1) / 2  # input voxel of each output voxel
            if self.lattice is not None:
                lattice = torch.from_numpy(self.lattice).float()
                disp = F.interpolate(lattice, size=out_shape, mode="trilinear", align_corners=True)
                grid = grid + disp[0].permute(1, 2, 3, 0)
            # grid_sample wants (x, y, z) = (last, middle, first axis), scaled to [-1, 1].
            grid = (2.0 * grid / (in_shape - 1).clamp(min=1) - 1.0).flip(-1)[None].contiguous()
            for key, mode in (("image", "bilinear"), ("label", "nearest")):
                vol = torch.as_tensor(out[key])
                warped = F.grid_sample(
                    vol[None].float(), grid, mode=mode, padding_mode="border", align_corners=True
                )
                out[key] = warped[0].to(vol.dtype)
            return out

    return RandSpatiald()


def build_patch_chain(
    config: AugmentConfig, patch: tuple[int, int, int], num_classes: int, pairs
) -> Any:
    """The random part of the training chain: a cached case dict in, one patch out."""
    from monai import transforms as mt

    big = tuple(p + 2 * config.margin for p in patch)
    chain: list[Any] = [
        mt.RandCropByLabelClassesd(
            keys=KEYS,
            label_key="label",
            spatial_size=big,
            num_classes=num_classes,
            num_samples=1,
            indices_key="label_cls_indices",
            allow_smaller=True,
            warn=False,
        ),
        rand_spatial(config, patch),
    ]
    if config.flip_axes:
        chain.append(
            rand_flip_swap(config.flip_axes, config.flip_prob, pairs, config.left_right_axis)
        )
    chain += [
        mt.RandAdjustContrastd(keys="image", prob=config.gamma_prob, gamma=config.gamma),
        mt.RandScaleIntensityd(keys="image", prob=config.contrast_prob, factors=config.contrast),
        mt.RandShiftIntensityd(
            keys="image", prob=config.brightness_prob, offsets=config.brightness
        ),
        mt.RandGaussianNoised(keys="image", prob=config.noise_prob, std=config.noise_std),
        mt.RandGaussianSmoothd(
            keys="image",
            prob=config.blur_prob,
            sigma_x=(0.5, 1.0),
            sigma_y=(0.5, 1.0),
            sigma_z=(0.5, 1.0),
        ),
        mt.EnsureTyped(keys=KEYS, track_meta=False),
    ]
    return mt.Compose(chain, lazy=False)
