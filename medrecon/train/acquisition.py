"""What the scanner and the protocol do to an image, as MONAI random transforms on the
training patch (``image`` (1, X, Y, Z) on the model grid, ``label``, ``tissue``).

* :func:`rand_synth`: the image replaced by one synthesised from the tissue map
  (:mod:`medrecon.train.synth`).
* :func:`rand_contrast_phase`: a real CT moved to another contrast phase
  (:mod:`medrecon.train.phases`).
* :func:`rand_field_of_view`: a limited scan: an axial slab of ``fov_mm`` and/or an
  in-plane box, the rest filled as the sliding window pads (the image minimum) and
  left out of the loss, so organs end at any border as they do in a 20-slice study.
* :func:`rand_scan_end`: the scan ends inside the patch: the patch shifted along the
  axial axis, the slices it vacates filled and left out of the loss, so the first and
  last slices of a training volume also appear with fill beyond them.
* :func:`rand_slice_thickness`: a thick or gapped acquisition: a Gaussian slice
  profile of the drawn thickness, sampled at the drawn spacing and interpolated back
  linearly (what inference's resampling does to such a study).
* :func:`rand_bias_field`: a smooth multiplicative field (MR coil sensitivity).

Each draws from its own ``self.R`` (MONAI's seeded generator), so a run stays
reproducible patch by patch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from medrecon.train.phases import apply_phase, phase_targets
from medrecon.train.prepare import IGNORE
from medrecon.train.synth import gaussian_blur_axes, synthesise

__all__ = [
    "rand_bias_field",
    "rand_clamp",
    "rand_contrast_phase",
    "rand_field_of_view",
    "rand_scan_end",
    "rand_slice_thickness",
    "rand_synth",
]

logger = logging.getLogger(__name__)

#: FWHM of a Gaussian = this many standard deviations.
FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _base():
    from monai.transforms import MapTransform, Randomizable

    class Base(Randomizable, MapTransform):
        def __init__(self) -> None:
            MapTransform.__init__(self, keys=("image",), allow_missing_keys=True)

    return Base


def rand_synth(
    prob: float, std_max: float, blur_max: float, zscore: bool = False, dark_prob: float = 1.0
) -> Any:
    """With probability ``prob`` the image becomes a synthetic one from ``tissue``
    (then ``synthetic`` is True in the patch); ``zscore``: scaled to mean 0, sd 1."""

    class RandSynthd(_base()):
        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            out = dict(data)
            out["synthetic"] = False
            if "tissue" not in out or self.R.rand() >= prob:
                return out
            image = synthesise(
                out["tissue"], self.R, std_max=std_max, blur_max=blur_max, dark_prob=dark_prob
            )
            if zscore:
                image = (image - image.mean()) / image.std().clamp(min=1e-6)
            out["image"] = image.to(dtype=out["image"].dtype)
            out["synthetic"] = True
            return out

    return RandSynthd()


def rand_contrast_phase(prob: float, phases, window: tuple[float, float]) -> Any:
    """With probability ``prob`` a real (not synthetic) windowed CT patch is moved to a
    phase drawn from ``phases``; ``window`` is the pipeline's (lo, hi) HU -> [0, 1]."""
    lo, hi = window
    scale, offset = 1.0 / (hi - lo), -lo / (hi - lo)

    class RandContrastPhased(_base()):
        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            import torch

            groups = data.get("phase_groups") or {}
            if data.get("synthetic") or not groups or self.R.rand() >= prob:
                return data
            phase = phases[self.R.randint(len(phases))]
            rng = np.random.default_rng(self.R.randint(2**31))
            out = dict(data)
            image = torch.as_tensor(out["image"])
            tissue = torch.as_tensor(out["tissue"]).numpy()
            moved = apply_phase(
                image.numpy(), tissue, groups, phase_targets(phase, rng), scale=scale, offset=offset
            )
            out["image"] = torch.from_numpy(moved).to(image.dtype)
            return out

    return RandContrastPhased()


def rand_field_of_view(
    axial_prob: float,
    fov_mm: tuple[float, float],
    inplane_prob: float,
    inplane_min: float,
    spacing: tuple[float, float, float],
    axial_axis: int = 2,
) -> Any:
    """A limited field of view: with ``axial_prob`` only an axial slab ``fov_mm`` thick
    (at a random height) is kept; with ``inplane_prob`` only an in-plane box of at
    least ``inplane_min`` of each in-plane side. Outside: the image minimum, and the
    label :data:`IGNORE` (inference never reports those voxels)."""
    plane = [a for a in range(3) if a != axial_axis]

    class RandFieldOfViewd(_base()):
        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            import torch

            image = torch.as_tensor(data["image"])
            shape = image.shape[1:]
            keep = [slice(None)] * 3
            changed = False
            if self.R.rand() < axial_prob:
                n = max(1, round(self.R.uniform(*fov_mm) / spacing[axial_axis]))
                if n < shape[axial_axis]:
                    start = self.R.randint(0, shape[axial_axis] - n + 1)
                    keep[axial_axis] = slice(start, start + n)
                    changed = True
            if self.R.rand() < inplane_prob:
                for a in plane:
                    n = round(self.R.uniform(inplane_min, 1.0) * shape[a])
                    if 0 < n < shape[a]:
                        start = self.R.randint(0, shape[a] - n + 1)
                        keep[a] = slice(start, start + n)
                        changed = True
            if not changed:
                return data
            inside = torch.zeros(shape, dtype=torch.bool)
            inside[tuple(keep)] = True
            out = dict(data)
            fill = image[0][inside].min()
            out["image"] = torch.where(inside[None], image, fill)
            label = torch.as_tensor(out["label"])
            out["label"] = torch.where(inside[None], label, torch.tensor(IGNORE, dtype=label.dtype))
            return out

    return RandFieldOfViewd()


def rand_scan_end(prob: float, max_frac: float, axial_axis: int = 2) -> Any:
    """With ``prob`` the patch moves by 1 to ``max_frac`` of its axial length, up or down;
    the slices it vacates hold the image minimum and :data:`IGNORE`.

    Class-centred crops are clamped inside the volume, so without this a training
    volume's first and last slices only ever sit at the patch border: a network then
    learns that nothing is cut off there, and fails on a slab through the same anatomy
    padded on both sides, as inference pads it (measured: liver Dice 0.93 on the top 10
    slices of the training CT at the top of the input, 0.00 with fill above them).
    """

    class RandScanEndd(_base()):
        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            import torch

            if self.R.rand() >= prob:
                return data
            image = torch.as_tensor(data["image"])
            n = image.shape[1 + axial_axis]
            shift = self.R.randint(1, max(1, round(max_frac * n)) + 1)
            if shift >= n:
                return data
            up = self.R.rand() < 0.5
            src = [slice(None)] * 4
            dst = [slice(None)] * 4
            src[1 + axial_axis] = slice(0, n - shift) if up else slice(shift, n)
            dst[1 + axial_axis] = slice(shift, n) if up else slice(0, n - shift)
            out = dict(data)
            for key, fill in (("image", image.min()), ("label", IGNORE), ("tissue", 0)):
                if key not in data:
                    continue
                old = torch.as_tensor(data[key])
                new = torch.full_like(old, fill)
                new[tuple(dst)] = old[tuple(src)]
                out[key] = new
            return out

    return RandScanEndd()


def _thicken(image, axis: int, spacing_mm: float, thickness_mm: float, grid_mm: float):
    """``image`` as if acquired along ``axis`` with a Gaussian slice profile of FWHM
    ``thickness_mm`` at ``spacing_mm`` and linearly resampled back onto the grid."""
    import torch.nn.functional as F

    # The model grid already integrates over its own voxel: blur only by the excess.
    excess = max(thickness_mm**2 - grid_mm**2, 0.0) ** 0.5
    sigmas = [0.0, 0.0, 0.0]
    sigmas[axis] = excess / FWHM / grid_mm
    out = gaussian_blur_axes(image, sigmas) if sigmas[axis] > 0.2 else image.float()
    n = out.shape[axis + 1]
    low = max(2, round((n - 1) * grid_mm / spacing_mm) + 1)
    if spacing_mm > grid_mm * 1.05 and low < n:
        size = list(out.shape[1:])
        size[axis] = low
        out = F.interpolate(out[None], size=size, mode="trilinear", align_corners=True)
        out = F.interpolate(out, size=tuple(image.shape[1:]), mode="trilinear", align_corners=True)
        out = out[0]
    return out


def rand_slice_thickness(
    prob: float,
    spacing_mm: tuple[float, float],
    inplane_prob: float,
    inplane_mm: tuple[float, float],
    grid: tuple[float, float, float],
    axial_axis: int = 2,
) -> Any:
    """With ``prob``, a through-plane spacing in ``spacing_mm`` and a slice thickness
    of 0.7-1.3 times it; with ``inplane_prob``, a coarser in-plane pixel too."""

    class RandSliceThicknessd(_base()):
        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            import torch

            plan = []
            if self.R.rand() < prob:
                s = self.R.uniform(*spacing_mm)
                plan.append((axial_axis, s, s * self.R.uniform(0.7, 1.3)))
            if self.R.rand() < inplane_prob:
                s = self.R.uniform(*inplane_mm)
                plan += [(a, s, s) for a in range(3) if a != axial_axis]
            if not plan:
                return data
            out = dict(data)
            image = torch.as_tensor(out["image"])
            result = image
            for axis, s, t in plan:
                result = _thicken(result, axis, s, t, grid[axis])
            out["image"] = result.to(image.dtype)
            return out

    return RandSliceThicknessd()


def rand_bias_field(prob_synthetic: float, prob_real: float, std: float, points: int) -> Any:
    """A smooth multiplicative field exp(f), f trilinear from a ``points``^3 lattice of
    N(0, s) with s up to ``std``; more often on synthetic images than on real CT."""

    class RandBiasFieldd(_base()):
        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            import torch
            import torch.nn.functional as F

            prob = prob_synthetic if data.get("synthetic") else prob_real
            if self.R.rand() >= prob:
                return data
            s = self.R.uniform(0, std)
            lattice = torch.from_numpy(self.R.normal(0, s, (1, 1, points, points, points)))
            out = dict(data)
            image = torch.as_tensor(out["image"])
            field = F.interpolate(
                lattice.float(), size=tuple(image.shape[1:]), mode="trilinear", align_corners=True
            )[0]
            lo = image.min()
            # Around the minimum, so air stays at the floor and only tissue is scaled.
            biased = (image - lo) * torch.exp(field) + lo
            if data.get("synthetic"):  # synthetic images stay in [0, 1], as synthesised
                biased = (biased - lo) / (biased.max() - lo).clamp(min=1e-6) + lo
            out["image"] = biased.to(image.dtype)
            return out

    return RandBiasFieldd()


def rand_clamp(lo: float, hi: float) -> Any:
    """Clip the image to [lo, hi], as the pipeline's intensity step clips at inference."""

    class Clampd(_base()):
        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            import torch

            out = dict(data)
            out["image"] = torch.as_tensor(out["image"]).clamp(lo, hi)
            return out

    return Clampd()
