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
from medrecon.pipeline.config import Pipeline, left_right_pairs

__all__ = [
    "AugmentConfig",
    "ModelSpace",
    "build_patch_chain",
    "left_right_pairs",
    "rand_flip_swap",
    "rand_spatial",
]

logger = logging.getLogger(__name__)

KEYS = ("image", "label")
#: Keys resampled nearest-neighbour by the spatial transforms.
_DISCRETE = ("label", "tissue")


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
    # Synthesis from the tissue map (medrecon.train.synth); 0 = real images only.
    synth_prob: float = 0.0
    #: Intensity clusters the unlabelled voxels are split into for synthesis.
    synth_clusters: int = 4
    synth_std_max: float = 0.08
    #: Largest partial-volume blur (voxels) of a synthetic image.
    synth_blur_max: float = 1.0
    #: Probability that air (the darkest cluster) is drawn dark rather than at random.
    synth_dark_prob: float = 1.0
    # Contrast phases of real CT patches (medrecon.train.phases); needs a ct_window pipeline.
    phase_prob: float = 0.0
    phases: tuple[str, ...] = ("non_contrast", "arterial", "portal_venous", "delayed")
    # Limited fields of view (medrecon.train.acquisition.rand_field_of_view).
    fov_prob: float = 0.0
    fov_mm: tuple[float, float] = (10.0, 200.0)
    inplane_crop_prob: float = 0.0
    inplane_crop_min: float = 0.5
    # The scan ends inside the patch (rand_scan_end): shift by up to this patch fraction.
    scan_end_prob: float = 0.0
    scan_end_max: float = 0.5
    # Thick or gapped slices and coarse pixels (rand_slice_thickness).
    thick_prob: float = 0.0
    thick_spacing_mm: tuple[float, float] = (1.0, 7.0)
    coarse_inplane_prob: float = 0.0
    coarse_inplane_mm: tuple[float, float] = (1.0, 4.5)
    # Smooth multiplicative bias field (rand_bias_field).
    bias_prob: float = 0.0
    bias_real_prob: float = 0.0
    bias_std: float = 0.3
    bias_points: int = 4

    @property
    def needs_tissue(self) -> bool:
        """True when patches need the tissue map (synthesis or contrast phases)."""
        return self.synth_prob > 0 or self.phase_prob > 0

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], where: str = "augment") -> AugmentConfig:
        names = {f.name: f for f in fields(cls)}
        if unknown := set(raw) - set(names):
            raise InputError(f"{where}: unknown augmentation keys {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        config = cls(**values)
        config.check(where)
        return config

    def check(self, where: str = "augment") -> None:
        """Raise on values no transform can use (probabilities, ranges, phase names)."""
        from medrecon.train.phases import PHASES

        for f in fields(self):
            if f.name.endswith("_prob") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise InputError(f"{where}: {f.name} must be in [0, 1]")
        for name in ("fov_mm", "thick_spacing_mm", "coarse_inplane_mm"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise InputError(f"{where}: {name} must be (low, high) with 0 < low <= high")
        if bad := [p for p in self.phases if p not in PHASES]:
            raise InputError(
                f"{where}: unknown contrast phases {bad}; choose from {sorted(PHASES)}"
            )
        if not 0 < self.inplane_crop_min <= 1:
            raise InputError(f"{where}: inplane_crop_min must be in (0, 1]")
        if not 0 < self.scan_end_max < 1:
            raise InputError(f"{where}: scan_end_max must be in (0, 1)")


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
                for key in (*KEYS, "tissue"):
                    if key in out:
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
            for key in ("image", *_DISCRETE):
                if key not in out:
                    continue
                mode = "nearest" if key in _DISCRETE else "bilinear"
                vol = torch.as_tensor(out[key])
                warped = F.grid_sample(
                    vol[None].float(), grid, mode=mode, padding_mode="border", align_corners=True
                )
                out[key] = warped[0].to(vol.dtype)
            return out

    return RandSpatiald()


@dataclass(frozen=True)
class ModelSpace:
    """What the chain must know of the pipeline's model input: voxel size (mm), which
    axis is axial, the CT window (HU) when intensities are windowed, the range the
    intensity step clips to, and whether images are z-scored."""

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    axial_axis: int = 2
    window: tuple[float, float] | None = None
    clip: tuple[float, float] | None = None
    zscore: bool = False

    @classmethod
    def of(cls, pipeline: Pipeline) -> ModelSpace:
        from medrecon.pipeline.config import CT_WINDOW, ZSCORE

        pre = pipeline.preprocess
        codes = pre.orientation.upper()
        axial = next((i for i, c in enumerate(codes) if c in "SI"), 2)
        inten = pre.intensity
        return cls(
            spacing=tuple(float(s) for s in (pre.spacing or (1.0, 1.0, 1.0))),
            axial_axis=axial,
            window=tuple(inten.window) if inten.mode == CT_WINDOW else None,
            clip=(0.0, 1.0) if inten.mode != ZSCORE and inten.clip else None,
            zscore=inten.mode == ZSCORE,
        )


def build_patch_chain(
    config: AugmentConfig,
    patch: tuple[int, int, int],
    num_classes: int,
    pairs,
    space: ModelSpace | None = None,
) -> Any:
    """The random part of the training chain: a cached case dict in, one patch out.

    Order: crop, geometry (affine, elastic, flips; image, label and tissue together),
    then what makes the image (a contrast phase of the real CT, or a synthetic image
    from the tissue map), then how it was acquired (scan end, field of view, slice thickness,
    bias field), then the generic intensity changes, and last the pipeline's clip.
    """
    from monai import transforms as mt

    from medrecon.train import acquisition as acq

    space = space or ModelSpace()
    keys = ("image", "label", "tissue") if config.needs_tissue else KEYS
    big = tuple(p + 2 * config.margin for p in patch)
    chain: list[Any] = [
        mt.RandCropByLabelClassesd(
            keys=keys,
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
    if config.phase_prob > 0:
        if space.window is None:
            logger.warning("phase_prob is set but the pipeline does not window CT: no phases")
        else:
            chain.append(acq.rand_contrast_phase(config.phase_prob, config.phases, space.window))
    if config.synth_prob > 0:
        chain.append(
            acq.rand_synth(
                config.synth_prob,
                config.synth_std_max,
                config.synth_blur_max,
                space.zscore,
                config.synth_dark_prob,
            )
        )
    if config.scan_end_prob > 0:
        chain.append(acq.rand_scan_end(config.scan_end_prob, config.scan_end_max, space.axial_axis))
    if config.fov_prob > 0 or config.inplane_crop_prob > 0:
        chain.append(
            acq.rand_field_of_view(
                config.fov_prob,
                config.fov_mm,
                config.inplane_crop_prob,
                config.inplane_crop_min,
                space.spacing,
                space.axial_axis,
            )
        )
    if config.thick_prob > 0 or config.coarse_inplane_prob > 0:
        chain.append(
            acq.rand_slice_thickness(
                config.thick_prob,
                config.thick_spacing_mm,
                config.coarse_inplane_prob,
                config.coarse_inplane_mm,
                space.spacing,
                space.axial_axis,
            )
        )
    if config.bias_prob > 0 or config.bias_real_prob > 0:
        chain.append(
            acq.rand_bias_field(
                config.bias_prob, config.bias_real_prob, config.bias_std, config.bias_points
            )
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
    ]
    if space.clip is not None:  # noise and phases must not leave the range inference sees
        chain.append(acq.rand_clamp(*space.clip))
    chain.append(mt.EnsureTyped(keys=KEYS, track_meta=False))
    return mt.Compose(chain, lazy=False)
