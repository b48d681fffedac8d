"""Resample a sorted slice stack onto its planned orthogonal, uniform grid.

Source slices are parallel planes; each may be shifted in-plane (gantry tilt) and
the planes may be unevenly spaced or have holes. The target value is linear in
the plane (the shift) and linear between the two nearest planes, so slices that
fall exactly on a target plane with an integer shift are copied exactly.
"""

from __future__ import annotations

import numpy as np

from medrecon.io.dicom.geometry import StackGeometry

__all__ = ["resample_stack"]

_PLANE_TOL_MM = 1e-4


def _shifted(
    plane: np.ndarray, offset: np.ndarray, geometry: StackGeometry, fill: float
) -> np.ndarray:
    """Slice ``plane`` (rows, cols) sampled on the target in-plane grid (rows_t, cols_t)."""
    cols_t, rows_t = geometry.shape[0], geometry.shape[1]
    # Target (row j, col i) looks at source (j + j0 - v, i + i0 - u).
    shift = (
        geometry.grid_offset[1] - offset[1],
        geometry.grid_offset[0] - offset[0],
    )
    rounded = np.rint(shift)
    out = np.full((rows_t, cols_t), fill, dtype=np.float32)
    if np.allclose(shift, rounded, atol=1e-6):
        dr, dc = int(rounded[0]), int(rounded[1])
        rows, cols = plane.shape
        r0, r1 = max(0, -dr), min(rows_t, rows - dr)
        c0, c1 = max(0, -dc), min(cols_t, cols - dc)
        if r1 > r0 and c1 > c0:
            out[r0:r1, c0:c1] = plane[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
        return out
    from scipy import ndimage  # here: scipy.ndimage costs ~0.25 s to import, rarely needed

    ndimage.affine_transform(
        plane.astype(np.float32, copy=False),
        np.eye(2),
        offset=shift,
        output_shape=(rows_t, cols_t),
        output=out,
        order=1,
        mode="constant",
        cval=fill,
    )
    return out


def resample_stack(slices: np.ndarray, geometry: StackGeometry) -> np.ndarray:
    """Map ``slices`` ``(N, rows, cols)`` (sorted as ``geometry.positions``) to the target grid.

    Returns a float32 array ``(rows_t, cols_t, n_target)``; values outside the
    source field of view are the stack's minimum (air for CT, background for MR).
    """
    positions = geometry.positions
    fill = float(slices.min()) if slices.size else 0.0
    cache: dict[int, np.ndarray] = {}

    def plane(k: int) -> np.ndarray:
        if k not in cache:
            for old in [key for key in cache if key < k - 1]:
                del cache[old]  # targets ascend: planes below k-1 are never needed again
            cache[k] = _shifted(slices[k], geometry.offsets[k], geometry, fill)
        return cache[k]

    out = np.empty(
        (geometry.shape[1], geometry.shape[0], len(geometry.target_positions)), dtype=np.float32
    )
    last = len(positions) - 1
    for t, z in enumerate(geometry.target_positions):
        b = int(np.searchsorted(positions, z, side="left"))
        if b <= last and abs(positions[b] - z) <= _PLANE_TOL_MM:
            out[:, :, t] = plane(b)
            continue
        if b > 0 and abs(positions[b - 1] - z) <= _PLANE_TOL_MM:
            out[:, :, t] = plane(b - 1)
            continue
        a, b = max(b - 1, 0), min(b, last)
        w = 0.0 if a == b else (z - positions[a]) / (positions[b] - positions[a])
        out[:, :, t] = (1.0 - w) * plane(a) + w * plane(b)
    return out
