"""Output grids and affine-honouring resampling onto them.

A grid is a shape and a voxel -> RAS affine. ``isotropic_grid`` builds the
default one: the first stack's orientation, the finest in-plane spacing of all
stacks, covering every stack's voxel centres. ``like_grid`` copies a reference
image's grid exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrecon.superres.profile import thick_axis
from medrecon.volume import Volume

__all__ = [
    "OutputGrid",
    "coverage",
    "in_plane_spacing",
    "isotropic_grid",
    "like_grid",
    "resample_to",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputGrid:
    """A 3D voxel grid: ``shape`` and its voxel -> RAS mm ``affine``."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def volume(self, array: np.ndarray, meta=None) -> Volume:
        """A Volume on this grid holding ``array`` (its shape must match)."""
        if tuple(array.shape[:3]) != self.shape:
            raise ValueError(f"array of shape {array.shape} does not fit grid {self.shape}")
        return Volume(array, self.affine.copy(), meta)


def in_plane_spacing(volume: Volume) -> float:
    """The finest spacing among the stack's two in-plane (non-thick) axes, in mm."""
    axis = thick_axis(volume.affine)
    return float(min(s for i, s in enumerate(volume.spacing) if i != axis))


def _corners(volume: Volume) -> np.ndarray:
    """RAS positions of the 8 corner voxel centres."""
    n = np.asarray(volume.spatial_shape) - 1
    ijk = np.array([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])], float)
    return volume.voxel_to_ras(ijk)


def isotropic_grid(stacks: Sequence[Volume], spacing: float | None = None) -> OutputGrid:
    """An isotropic grid in the first stack's orientation covering all stacks' voxel centres.

    ``spacing`` defaults to the finest in-plane spacing of the stacks. For one stack
    whose in-plane spacing is the grid's, the in-plane grid points are the stack's own
    voxel centres and the first slice's centre plane is a grid plane.
    """
    if not stacks:
        raise ValueError("isotropic_grid needs at least one stack")
    if spacing is None:
        spacing = min(in_plane_spacing(v) for v in stacks)
    if not spacing > 0:
        raise ValueError(f"grid spacing must be positive, got {spacing}")
    direction = stacks[0].direction
    origin0 = stacks[0].origin
    # Extents in the first stack's (orthonormalised) frame, in mm from its origin.
    q, _ = np.linalg.qr(direction)
    q = q * np.sign(np.diag(q.T @ direction))
    pts = np.concatenate([_corners(v) for v in stacks]) - origin0
    local = pts @ q
    lo, hi = local.min(axis=0), local.max(axis=0)
    shape = tuple(int(np.floor((b - a) / spacing + 1e-6)) + 1 for a, b in zip(lo, hi))
    affine = np.eye(4)
    affine[:3, :3] = q * spacing
    affine[:3, 3] = origin0 + q @ lo
    log.debug("isotropic grid %s at %.3g mm", shape, spacing)
    return OutputGrid(shape, affine)  # type: ignore[arg-type]


def like_grid(reference: Volume | OutputGrid | str | Path) -> OutputGrid:
    """The grid of a reference Volume, OutputGrid or image file, shape and affine exactly."""
    if isinstance(reference, OutputGrid):
        return OutputGrid(reference.shape, reference.affine.copy())
    if isinstance(reference, (str, Path)):
        from medrecon.io import load

        reference = load(reference)
    return OutputGrid(reference.spatial_shape, reference.affine.copy())


def resample_to(
    volume: Volume,
    grid: OutputGrid,
    order: int = 1,
    *,
    mode: str = "nearest",
    cval: float = 0.0,
) -> Volume:
    """``volume`` sampled at ``grid``'s voxel centres (scipy, spline ``order``; 3 = cubic B-spline).

    The world -> source-voxel map is ``inv(volume.affine) @ grid.affine``, so any
    orientation of either side is honoured. ``mode`` says what points outside the
    source's centres get: "nearest" (default) clamps to the edge voxel.
    """
    from scipy import ndimage

    if volume.array.ndim != 3:
        raise ValueError(f"resample_to takes a 3D volume, got shape {volume.shape}")
    m = np.linalg.inv(volume.affine) @ grid.affine
    src = np.asarray(volume.array, dtype=np.float32)
    out = ndimage.affine_transform(
        src, m[:3, :3], offset=m[:3, 3], output_shape=grid.shape, order=order, mode=mode, cval=cval
    )
    return Volume(out, grid.affine.copy(), volume.meta.copy())


def coverage(stack: Volume, grid: OutputGrid) -> np.ndarray:
    """Grid points inside ``stack``'s field of view (half a voxel beyond its edge centres)."""
    m = np.linalg.inv(stack.affine) @ grid.affine
    idx = np.indices(grid.shape, dtype=np.float32).reshape(3, -1)
    ijk = m[:3, :3].astype(np.float32) @ idx + m[:3, 3:4].astype(np.float32)
    n = np.asarray(stack.spatial_shape, np.float32)[:, None]
    inside = np.all((ijk >= -0.5) & (ijk <= n - 0.5), axis=0)
    return inside.reshape(grid.shape)
