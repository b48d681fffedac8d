"""The benchmark's peers (linear and cubic B-spline interpolation) and its metrics.

Metrics are computed on the truth's grid inside a mask (a body mask by default
in the benchmark), so air around the patient does not inflate them.
"""

from __future__ import annotations

import logging

import numpy as np

from medrecon.foreground import foreground
from medrecon.superres.grid import OutputGrid, resample_to
from medrecon.volume import Volume

__all__ = [
    "METHODS",
    "body_mask",
    "foreground",
    "foreground_footprint",
    "footprint_box",
    "interpolate",
    "psnr",
    "ssim",
]

log = logging.getLogger(__name__)

#: Interpolation baselines and their spline orders.
METHODS = {"linear": 1, "bspline": 3}


def interpolate(stack: Volume, grid: OutputGrid, method: str = "bspline") -> Volume:
    """``stack`` interpolated onto ``grid`` by ``method`` ("linear" or "bspline", cubic)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return resample_to(stack, grid, order=METHODS[method])


def _pair(truth: np.ndarray, test: np.ndarray, mask: np.ndarray | None):
    truth = np.asarray(truth, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if truth.shape != test.shape:
        raise ValueError(f"shapes differ: {truth.shape} vs {test.shape}")
    if mask is None:
        mask = np.ones(truth.shape, bool)
    mask = np.asarray(mask, bool)
    if mask.shape != truth.shape or not mask.any():
        raise ValueError("mask must match the images and select at least one voxel")
    return truth, test, mask


def _range(truth: np.ndarray, mask: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    vals = truth[mask]
    return float(vals.max() - vals.min()) or 1.0


def psnr(
    truth: np.ndarray,
    test: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Peak signal-to-noise ratio in dB over the mask; peak = the truth's range inside it."""
    truth, test, mask = _pair(truth, test, mask)
    mse = float(np.mean((truth[mask] - test[mask]) ** 2))
    peak = _range(truth, mask, data_range)
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def ssim(
    truth: np.ndarray,
    test: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Mean structural similarity (scikit-image, 7-voxel window) over the mask."""
    from skimage.metrics import structural_similarity

    truth, test, mask = _pair(truth, test, mask)
    _, smap = structural_similarity(
        truth, test, data_range=_range(truth, mask, data_range), full=True
    )
    return float(np.mean(smap[mask]))


def foreground_footprint(
    array: np.ndarray, modality: str | None, thick_axis: int, margin: int
) -> np.ndarray:
    """The in-plane pixels (a 2D mask over the other two axes, in order) where any slice
    along ``thick_axis`` holds :func:`foreground` (generous), widened by ``margin``
    pixels in a square. An image with no foreground gives an all-True footprint."""
    from scipy import ndimage

    fg = foreground(array, modality, generous=True).any(axis=thick_axis)
    if not fg.any():
        return np.ones(fg.shape, bool)
    if margin > 0:
        fg = ndimage.maximum_filter(fg, size=2 * margin + 1)  # a square dilation
    return fg


def footprint_box(footprint: np.ndarray, thick_axis: int) -> tuple[slice, ...]:
    """The 3D box around a :func:`foreground_footprint`: its bounding box in the two
    in-plane axes, ``slice(None)`` along ``thick_axis`` (so the box also cuts an
    array resampled along it)."""
    from scipy import ndimage

    box = list(ndimage.find_objects(footprint.astype(np.uint8))[0])
    box.insert(thick_axis, slice(None))
    return tuple(box)


def body_mask(volume: Volume | np.ndarray, modality: str | None = None) -> np.ndarray:
    """A rough body mask: :func:`foreground`, its largest component, holes filled slice
    by slice (dark tissue inside the body comes back with the hole filling)."""
    from scipy import ndimage

    if isinstance(volume, Volume):
        modality = modality or volume.meta.modality
        array = np.asarray(volume.array, dtype=np.float32)
    else:
        array = np.asarray(volume, dtype=np.float32)
    fg = foreground(array, modality)
    labels, n = ndimage.label(fg)
    if n == 0:
        log.warning("body mask is empty; using the whole image")
        return np.ones(array.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    # Holes (lungs, bowel gas) belong to the body; fill them in each axial plane.
    for k in range(mask.shape[2]):
        mask[..., k] = ndimage.binary_fill_holes(mask[..., k])
    return mask
