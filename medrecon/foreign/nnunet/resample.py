"""nnU-Net's resampling rule, computed one axis at a time.

nnU-Net resizes with ``skimage.transform.resize`` (``mode="edge"``, no
anti-aliasing), i.e. spline interpolation of order ``order`` sampled at
``(i + 0.5) * in / out - 0.5``; an anisotropic axis is resampled apart with
``order_z``. Spline interpolation on a regular grid is separable, so the same
values come from one 1-D pass per axis, and doing the most shrinking axis first
makes every later pass smaller. That is why this is faster than nnU-Net on
large images, not a different method.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medrecon.foreign.nnunet.plans import ResampleRule

__all__ = ["axis_orders", "new_shape", "resample_array", "resample_axis", "sample_positions"]

#: Edge padding before the spline prefilter (as scipy does for mode "nearest").
SPLINE_PAD = 12


def new_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple:
    """The shape at ``target`` spacing, rounded as nnU-Net rounds it."""
    return tuple(round(s / t * n) for n, s, t in zip(shape, spacing, target))


def _lowres_axes(spacing: Sequence[float]) -> list[int]:
    spacing = np.asarray(spacing, dtype=float)
    return [int(a) for a in np.where(spacing.max() / spacing == 1)[0]]


def _anisotropic(spacing: Sequence[float], threshold: float) -> bool:
    return bool(max(spacing) / min(spacing) > threshold)


def separate_axis(
    rule: ResampleRule, current: Sequence[float], target: Sequence[float]
) -> int | None:
    """The axis resampled apart (with ``order_z``), or None, by nnU-Net's decision rule."""
    if rule.force_separate_z is not None:
        axes = _lowres_axes(current) if rule.force_separate_z else None
    elif _anisotropic(current, rule.anisotropy_threshold):
        axes = _lowres_axes(current)
    elif _anisotropic(target, rule.anisotropy_threshold):
        axes = _lowres_axes(target)
    else:
        axes = None
    # Two or three equally coarse axes: nnU-Net falls back to plain resampling.
    return axes[0] if axes is not None and len(axes) == 1 else None


def axis_orders(rule: ResampleRule, current: Sequence[float], target: Sequence[float]):
    """Interpolation order per axis and the separately resampled axis (or None) for
    resampling from ``current`` to ``target`` spacing."""
    axis = separate_axis(rule, current, target)
    orders = tuple(rule.order_z if a == axis else rule.order for a in range(len(current)))
    return orders, axis


def sample_positions(n_in: int, n_out: int) -> np.ndarray:
    """Input coordinates sampled for each output index (pixel centres aligned)."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def _bspline3_weights(t: np.ndarray) -> list[np.ndarray]:
    """Cubic B-spline weights for taps at floor(x) - 1 ... floor(x) + 2."""
    t2, t3 = t * t, t * t * t
    return [
        (1 - t) ** 3 / 6,
        (3 * t3 - 6 * t2 + 4) / 6,
        (-3 * t3 + 3 * t2 + 3 * t + 1) / 6,
        t3 / 6,
    ]


def _shape_for(weights: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = weights.size
    return weights.reshape(shape).astype(np.float32)


def resample_axis(array: np.ndarray, axis: int, size: int, order: int) -> np.ndarray:
    """``array`` resized to ``size`` along ``axis`` (float32), spline ``order`` 0, 1 or 3;
    other orders go through scipy's zoom on that axis."""
    n = array.shape[axis]
    if n == size:
        return array
    x = sample_positions(n, size)
    if order == 0:
        index = np.clip(np.floor(x + 0.5).astype(np.intp), 0, n - 1)
        return np.take(array, index, axis=axis)
    if order == 1:
        x = np.clip(x, 0, n - 1)
        lo = np.floor(x).astype(np.intp)
        hi = np.minimum(lo + 1, n - 1)
        w = _shape_for(x - lo, axis, array.ndim)
        low = np.take(array, lo, axis=axis)
        low *= 1 - w
        low += np.take(array, hi, axis=axis) * w
        return low
    if order == 3:
        from scipy import ndimage

        pad = [(0, 0)] * array.ndim
        pad[axis] = (SPLINE_PAD, SPLINE_PAD)
        coeff = ndimage.spline_filter1d(
            np.pad(array, pad, mode="edge"), order=3, axis=axis, mode="nearest", output=np.float32
        )
        x = x + SPLINE_PAD
        base = np.floor(x).astype(np.intp)
        last = coeff.shape[axis] - 1
        out = None
        for k, w in enumerate(_bspline3_weights(x - base)):
            tap = np.take(coeff, np.clip(base + k - 1, 0, last), axis=axis)
            tap *= _shape_for(w, axis, array.ndim)
            out = tap if out is None else out.__iadd__(tap)
        return out
    from scipy import ndimage

    zoom = [1.0] * array.ndim
    zoom[axis] = size / n
    return ndimage.zoom(
        array.astype(np.float32, copy=False), zoom, order=order, mode="nearest", grid_mode=True
    )


def _value_range(array: np.ndarray, axis: int | None):
    """Min and max of ``array`` (per slice along ``axis`` when given), broadcastable."""
    if axis is None:
        return array.min(), array.max()
    other = tuple(a for a in range(array.ndim) if a != axis)
    return array.min(axis=other, keepdims=True), array.max(axis=other, keepdims=True)


def resample_array(
    array: np.ndarray, shape: Sequence[int], orders: Sequence[int], separate: int | None = None
) -> np.ndarray:
    """``array`` (3-D) resized to ``shape`` with a spline order per axis.

    ``separate`` is the axis nnU-Net resamples apart: the others are resized
    slice by slice first. skimage's resize clips its result to the input's range
    (per slice, when slices are resized one by one), which matters for cubic
    overshoot at sharp edges, so that clip is done here too.
    """
    out = np.asarray(array, dtype=np.float32)
    plane = [a for a in range(out.ndim) if a != separate]
    clip = max(orders[a] for a in plane) > 1 and any(out.shape[a] != shape[a] for a in plane)
    low_high = _value_range(out, separate) if clip else None
    # Shrink first: every later pass then works on fewer voxels.
    for axis in sorted(plane, key=lambda a: shape[a] / out.shape[a]):
        out = resample_axis(out, axis, int(shape[axis]), int(orders[axis]))
    if low_high is not None:
        np.clip(out, *low_high, out=out)
    if separate is not None:
        out = resample_axis(out, separate, int(shape[separate]), int(orders[separate]))
    return out
