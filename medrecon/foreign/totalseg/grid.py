"""TotalSegmentator's steps around nnU-Net: to RAS, to its spacing, and back.

They follow ``totalsegmentator/nnunet.py`` (``nnUNet_predict_image``) and
``resampling.py`` (``change_spacing``) so the models see what they see under
TotalSegmentator:

1. the closest canonical (RAS) orientation, by axis flips and permutations only
   (nibabel's ``as_closest_canonical``);
2. resampling to the task's isotropic spacing with ``scipy.ndimage.zoom`` (spline
   order 1, TotalSegmentator's default since 2.16, 3 before; ``mode="nearest"``;
   zoom = old / new spacing; shape rounded), the voxel values then cut to int32 as
   TotalSegmentator does; the affine's columns are scaled by 1 / zoom, so the
   spacing is exactly the target;
3. after nnU-Net, the labels zoomed back (order 0) to exactly the canonical shape,
   and the axes put back, so they lie on the input's own grid.

``zoom`` maps first voxel to first voxel and last to last, so steps 2 and 3 are
each other's inverse in voxel index; the resampled grid's affine is the one
TotalSegmentator writes (its centres drift by under half a voxel from the zoom's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medrecon.volume import Volume

__all__ = ["ModelGrid", "from_model_grid", "to_model_grid"]


@dataclass(frozen=True)
class ModelGrid:
    """What ``to_model_grid`` did, so ``from_model_grid`` can undo it."""

    #: nibabel orientation of the input (its axes -> RAS).
    ornt: np.ndarray
    #: Canonical shape before resampling (the labels' shape after step 3).
    canonical_shape: tuple[int, int, int]
    resampled: bool


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(affine[:3, :3], axis=0)


def to_model_grid(volume: Volume, spacing: tuple[float, float, float]) -> tuple[Volume, ModelGrid]:
    """``volume`` (3D) in RAS at ``spacing`` mm, as TotalSegmentator feeds nnU-Net."""
    import nibabel.orientations as nio
    from scipy import ndimage

    ornt = nio.io_orientation(volume.affine)
    array = nio.apply_orientation(np.asarray(volume.array), ornt)
    affine = volume.affine @ nio.inv_ornt_aff(ornt, volume.spatial_shape)
    canonical_shape = tuple(int(n) for n in array.shape)
    target = np.asarray(spacing, dtype=np.float64)
    # The spacing as a NIfTI header holds it (float32), which is what TotalSegmentator
    # compares and divides: the zoom factors, and so the grid, match its own.
    old = _spacing(affine).astype(np.float32).astype(np.float64)
    resampled = not np.array_equal(old, target)
    if resampled:
        zoom = old / target
        # float64 as TotalSegmentator (get_fdata): in float32 the interpolated values
        # land on the other side of an integer often enough to change the int32 cut.
        array = ndimage.zoom(array.astype(np.float64), zoom, order=1, mode="nearest")
        array = array.astype(np.int32)
        affine = affine.copy()
        affine[:3, :3] = affine[:3, :3] / zoom
    model_input = Volume(np.ascontiguousarray(array, dtype=np.float32), affine, volume.meta.copy())
    return model_input, ModelGrid(ornt=ornt, canonical_shape=canonical_shape, resampled=resampled)  # type: ignore[arg-type]


def from_model_grid(labels: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Labels on the model grid -> the input's own voxel grid (nearest neighbour)."""
    import nibabel.orientations as nio
    from scipy import ndimage

    if grid.resampled:
        zoom = np.asarray(grid.canonical_shape) / np.asarray(labels.shape)
        labels = ndimage.zoom(labels, zoom, order=0, mode="nearest")
    if tuple(labels.shape) != grid.canonical_shape:  # pragma: no cover - zoom rounds exactly
        raise AssertionError(f"labels {labels.shape} != canonical {grid.canonical_shape}")
    back = nio.ornt_transform(nio.axcodes2ornt("RAS"), grid.ornt)
    return np.ascontiguousarray(nio.apply_orientation(labels, back))
