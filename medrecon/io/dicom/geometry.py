"""Slice-stack geometry: sorting, spacing, missing slices, gantry tilt, target grid.

Pure functions on positions and orientations (LPS millimetres), no pixels.

Tolerances (also in docs/loading.md):
- spacing is uniform when every gap between neighbouring slice planes is within
  ``max(0.01 mm, 1% of the median gap)`` of the median gap;
- a gap of m times the median (within m times that tolerance) counts as m-1
  missing slices;
- a stack is sheared (gantry tilt) when some slice's in-plane offset from the
  first slice exceeds 0.05 pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "SPACING_TOL_ABS_MM",
    "SPACING_TOL_REL",
    "TILT_TOL_PX",
    "StackGeometry",
    "plan_stack_geometry",
    "slice_normal",
]

SPACING_TOL_ABS_MM = 0.01
SPACING_TOL_REL = 0.01
TILT_TOL_PX = 0.05
#: Resampling never makes more than this many times the source slice count.
MAX_UPSAMPLE = 2


def slice_normal(iop: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Unit normal (row cosine x column cosine) of a slice orientation."""
    iop = np.asarray(iop, dtype=float)
    n = np.cross(iop[:3], iop[3:])
    return n / np.linalg.norm(n)


@dataclass
class StackGeometry:
    """Where the source slices are and the grid they go onto."""

    row_cos: np.ndarray  # direction of increasing column index (i)
    col_cos: np.ndarray  # direction of increasing row index (j)
    normal: np.ndarray  # direction of increasing slice index (k)
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    positions: np.ndarray  # each source slice's distance along the normal, ascending
    offsets: np.ndarray  # (N, 2) in-plane offset (columns, rows) of each slice vs the first
    grid_offset: tuple[int, int]  # target (i, j) = 0 sits at this (column, row) of slice 0
    shape: tuple[int, int, int]  # target (columns, rows, slices)
    target_positions: np.ndarray  # each target plane's distance along the normal
    slice_spacing: float
    origin: np.ndarray  # LPS position of target voxel (0, 0, 0)
    tilt_deg: float = 0.0
    uneven: bool = False
    missing_slices: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def resample_planes(self) -> bool:
        """True when target planes are not exactly the source planes."""
        return len(self.target_positions) != len(self.positions) or not np.allclose(
            self.target_positions, self.positions, atol=1e-6, rtol=0
        )

    @property
    def sheared(self) -> bool:
        return bool(np.any(self.offsets != 0))

    @property
    def needs_resampling(self) -> bool:
        return self.resample_planes or self.sheared

    def affine_lps(self) -> np.ndarray:
        """Voxel (i, j, k) -> LPS mm for the target grid."""
        row_sp, col_sp = self.pixel_spacing
        aff = np.eye(4)
        aff[:3, 0] = self.row_cos * col_sp
        aff[:3, 1] = self.col_cos * row_sp
        aff[:3, 2] = self.normal * self.slice_spacing
        aff[:3, 3] = self.origin
        return aff


def _spacing_tolerance(median_gap: float) -> float:
    return max(SPACING_TOL_ABS_MM, SPACING_TOL_REL * median_gap)


def _plan_planes(
    positions: np.ndarray, fallback_spacing: float
) -> tuple[np.ndarray, float, bool, int]:
    """Target plane positions, their spacing, whether spacing was uneven, missing count."""
    n = len(positions)
    if n == 1:
        return positions.copy(), fallback_spacing, False, 0
    gaps = np.diff(positions)
    median = float(np.median(gaps))
    tol = _spacing_tolerance(median)
    if np.all(np.abs(gaps - median) <= tol):
        spacing = float(positions[-1] - positions[0]) / (n - 1)
        return positions.copy(), spacing, False, 0
    multiples = np.rint(gaps / median)
    regular_with_holes = bool(
        np.all(multiples >= 1) and np.all(np.abs(gaps - multiples * median) <= tol * multiples)
    )
    span = float(positions[-1] - positions[0])
    if regular_with_holes:
        # Missing slices only: keep the regular spacing so every real slice stays exact.
        n_target = int(multiples.sum()) + 1
        missing = n_target - n
    else:
        n_target = min(math.floor(span / float(gaps.min()) + 1e-6) + 1, MAX_UPSAMPLE * n)
        n_target = max(n_target, 2)
        missing = 0
    spacing = span / (n_target - 1)
    target = positions[0] + spacing * np.arange(n_target)
    return target, spacing, not regular_with_holes, missing


def plan_stack_geometry(
    iop: tuple[float, ...],
    ipps: np.ndarray,
    pixel_spacing: tuple[float, float],
    rows: int,
    cols: int,
    fallback_spacing: float = 1.0,
) -> tuple[StackGeometry, np.ndarray]:
    """Analyse the slice positions of one stack and plan its orthogonal, uniform grid.

    ``ipps`` is ``(N, 3)`` ImagePositionPatient (LPS) of distinct positions, any order.
    Returns the geometry and the order that sorts ``ipps`` along the slice normal.
    """
    iop_arr = np.asarray(iop, dtype=float)
    row_cos = iop_arr[:3] / np.linalg.norm(iop_arr[:3])
    col_cos = iop_arr[3:] / np.linalg.norm(iop_arr[3:])
    normal = slice_normal(iop_arr)
    ipps = np.asarray(ipps, dtype=float).reshape(-1, 3)
    along = ipps @ normal
    order = np.argsort(along, kind="stable")
    ipps, along = ipps[order], along[order]
    row_sp, col_sp = (float(s) for s in pixel_spacing)

    rel = ipps - ipps[0]
    offsets = np.stack([rel @ row_cos / col_sp, rel @ col_cos / row_sp], axis=1)
    warnings: list[str] = []
    tilt_deg = 0.0
    if np.abs(offsets).max(initial=0.0) <= TILT_TOL_PX:
        offsets = np.zeros_like(offsets)
    else:
        inplane = float(np.linalg.norm(rel[-1] - np.outer(rel[-1] @ normal, normal)))
        tilt_deg = math.degrees(math.atan2(inplane, float(along[-1] - along[0])))
        # Round offsets that are integers to float noise, so integer shifts stay exact.
        near = np.abs(offsets - np.rint(offsets)) < 1e-3
        offsets[near] = np.rint(offsets[near])

    target, spacing, uneven, missing = _plan_planes(along, fallback_spacing)
    lo = np.floor(offsets.min(axis=0) + 1e-3).astype(int)
    hi = np.ceil(offsets.max(axis=0) - 1e-3).astype(int)
    shape = (cols + int(hi[0] - lo[0]), rows + int(hi[1] - lo[1]), len(target))
    origin = ipps[0] + lo[0] * col_sp * row_cos + lo[1] * row_sp * col_cos

    if tilt_deg:
        warnings.append(
            f"gantry tilt of {tilt_deg:.2f} degrees corrected: slices were sheared "
            f"and have been resampled onto an orthogonal grid ({shape[0]}x{shape[1]} in-plane)"
        )
    if missing:
        warnings.append(
            f"{missing} missing slice(s) detected (gaps of {spacing:.4g} mm expected); "
            f"filled by linear interpolation between neighbours"
        )
    if uneven:
        gaps = np.diff(along)
        warnings.append(
            f"uneven slice spacing ({gaps.min():.4g} to {gaps.max():.4g} mm) resampled "
            f"to a uniform {spacing:.4g} mm over {len(target)} slices"
        )
    if len(along) == 1:
        warnings.append("single slice: slice spacing taken from the header")
    geometry = StackGeometry(
        row_cos=row_cos,
        col_cos=col_cos,
        normal=normal,
        pixel_spacing=(row_sp, col_sp),
        positions=along,
        offsets=offsets,
        grid_offset=(int(lo[0]), int(lo[1])),
        shape=shape,
        target_positions=target,
        slice_spacing=spacing,
        origin=origin,
        tilt_deg=tilt_deg,
        uneven=uneven,
        missing_slices=missing,
        warnings=warnings,
    )
    return geometry, order
