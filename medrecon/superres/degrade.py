"""The forward operator: thick-slice samples of a fine grid, exactly.

Positions along the axis are in mm from the centre of fine voxel 0; fine voxel
``m`` is the cell ``[m*h - h/2, m*h + h/2]`` (the image is taken as constant
over each cell). A thick slice centred at ``c`` is the profile-weighted mean of
the object, so fine voxel ``m`` gets the weight ``cdf(m*h + h/2 - c) -
cdf(m*h - h/2 - c)``: for a box, the part of the cell inside ``[c - T/2, c + T/2]``
over ``T`` (partial voxels count by their overlap); for a Gaussian of FWHM ``T``,
the Gaussian's mass over the cell.
"""

from __future__ import annotations

import logging

import numpy as np

from medrecon.superres.profile import SliceProfile
from medrecon.volume import Volume

__all__ = ["as_operator", "degrade_axis", "simulate_stack", "slice_centres", "weight_matrix"]

log = logging.getLogger(__name__)


def weight_matrix(
    profile: SliceProfile, h: float, n_fine: int, centres: np.ndarray, *, normalise: bool = True
) -> np.ndarray:
    """``(len(centres), n_fine)`` weights: row ``k`` samples the slice centred at ``centres[k]``.

    With ``normalise`` (default) a row whose profile runs past the ends of the grid
    is rescaled to sum to 1, i.e. the slice averages the part of the object that
    exists; rows inside the grid already sum to 1 (up to the Gaussian's tails).
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 1)
    edges = (np.arange(n_fine + 1, dtype=np.float64) - 0.5) * h
    cum = profile.cdf(edges[None, :] - centres)
    w = np.diff(cum, axis=1)
    if normalise:
        total = w.sum(axis=1, keepdims=True)
        if np.any(total <= 0):
            raise ValueError("a slice centre lies wholly outside the fine grid")
        w = w / total
    return w


def as_operator(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` in float32 for a product along an axis, entries below 1e-10 of its
    largest set to zero: the geometric tails of B-spline and inverse-Gram weights
    otherwise become denormal floats, which made the BLAS product 10-20x slower."""
    m = np.asarray(matrix, dtype=np.float64)
    small = np.abs(m) < 1e-10 * float(np.abs(m).max(initial=0.0))
    return np.ascontiguousarray(np.where(small, 0.0, m), dtype=np.float32)


def degrade_axis(
    array: np.ndarray,
    axis: int,
    h: float,
    profile: SliceProfile,
    centres: np.ndarray,
    *,
    normalise: bool = True,
) -> np.ndarray:
    """Thick-slice samples of ``array`` along ``axis`` (fine spacing ``h`` mm) at ``centres`` mm.

    The result has ``len(centres)`` entries along ``axis``; other axes are unchanged.
    Computed in float64 and returned as float32 for float32 input, else float64.
    """
    a = np.asarray(array)
    w = weight_matrix(profile, h, a.shape[axis], centres, normalise=normalise)
    moved = np.moveaxis(a.astype(np.float64, copy=False), axis, 0)
    out = np.tensordot(w, moved, axes=(1, 0))
    dtype = np.float32 if a.dtype == np.float32 else np.float64
    return np.moveaxis(out, 0, axis).astype(dtype, copy=False)


def slice_centres(
    n_fine: int, h: float, profile: SliceProfile, offset: float = 0.0, *, inside: bool = True
) -> np.ndarray:
    """Centres ``offset + k*spacing`` (mm from fine voxel 0) of the slices the grid can make.

    With ``inside`` (default) only slices whose whole profile support lies within
    the grid's extent ``[-h/2, (n_fine - 1/2)*h]`` are kept, so no slice is truncated
    and the simulated stack is an honest acquisition; else every centre on the grid.
    """
    lo, hi = -h / 2, (n_fine - 0.5) * h
    margin = min(profile.support, (hi - lo) / 2) if inside else 0.0
    first = offset + np.ceil((lo + margin - offset) / profile.spacing - 1e-9) * profile.spacing
    n = int(np.floor((hi - margin - first) / profile.spacing + 1e-9)) + 1
    if n < 2:
        raise ValueError(
            f"a grid of {n_fine} x {h:g} mm holds fewer than two {profile.thickness:g} mm slices"
        )
    return first + profile.spacing * np.arange(n)


def simulate_stack(
    volume: Volume,
    axis: int,
    profile: SliceProfile,
    offset: float = 0.0,
    *,
    inside: bool = True,
) -> Volume:
    """A thick stack acquired from ``volume`` along voxel ``axis`` with ``profile``.

    Slice ``k`` is centred ``offset + k*spacing`` mm (the first one inside the grid)
    from fine voxel 0 along ``axis``. The returned affine maps slice index ``k`` to
    that centre plane in RAS, whatever the source's orientation (oblique, LPS,
    permuted): its ``axis`` column is the source column scaled by ``spacing / h``
    and its origin moves along that column by ``centre_0 / h``. The header
    thickness goes in ``meta.extra["slice_thickness"]`` as a loaded stack's would.
    """
    if volume.array.ndim != 3:
        raise ValueError(f"simulate_stack takes a 3D volume, got shape {volume.shape}")
    h = float(volume.spacing[axis])
    centres = slice_centres(volume.shape[axis], h, profile, offset, inside=inside)
    data = degrade_axis(volume.array, axis, h, profile, centres)
    affine = volume.affine.copy()
    column = volume.affine[:3, axis]
    affine[:3, axis] = column * (profile.spacing / h)
    affine[:3, 3] = volume.affine[:3, 3] + column * (centres[0] / h)
    meta = volume.meta.copy()
    meta.extra["slice_thickness"] = profile.thickness
    meta.extra["simulated"] = {
        **profile.describe(),
        "axis": int(axis),
        "first_centre_mm": float(centres[0]),
        "source_spacing_mm": h,
    }
    log.debug("simulated %d %s slices along axis %d", len(centres), profile.kind, axis)
    return Volume(data, affine, meta)
