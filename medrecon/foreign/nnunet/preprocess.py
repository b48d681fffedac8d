"""From a medrecon Volume to the array nnU-Net's preprocessing would produce.

nnU-Net never looks at world coordinates: it works on the voxel array as its
reader returns it. For a NIfTI file medrecon's Volume holds the file's own
voxel order ``(i, j, k)`` and its affine; SimpleITK and nnU-Net's NibabelIO
both hand nnU-Net that array reversed, ``(k, j, i)``, with the spacing reversed
too. NibabelIOWithReorient first reorients the file to the closest RAS axes. A
DICOM series is treated as the NIfTI medrecon would write for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medrecon.errors import PipelineError
from medrecon.foreign.nnunet.plans import Configuration

__all__ = ["ReaderView", "nonzero_box", "normalise", "reader_view"]

logger = logging.getLogger(__name__)

EPS = 1e-8


@dataclass(frozen=True)
class ReaderView:
    """The array as nnU-Net's reader gives it, its spacing, and the way back."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    #: Maps an array on the reader's grid back to the Volume's voxel grid.
    restore: Callable[[np.ndarray], np.ndarray]


def reader_view(volume, reader: str, source=None) -> ReaderView:
    """``volume`` as ``reader`` (SimpleITKIO, NibabelIO, NibabelIOWithReorient) reads it."""
    if volume.array.ndim != 3:
        raise PipelineError(
            f"nnU-Net model {source}: input has shape {volume.array.shape}; the model takes one "
            "3-D image (pick one frame or echo first)"
        )
    spacing = volume.spacing
    if reader != "NibabelIOWithReorient":
        return ReaderView(
            volume.array.transpose(2, 1, 0), tuple(spacing[::-1]), lambda a: a.transpose(2, 1, 0)
        )
    from nibabel import orientations as ornt_mod

    ornt = ornt_mod.io_orientation(volume.affine)
    ras = ornt_mod.apply_orientation(volume.array, ornt)
    # Output axis ornt[j, 0] of the reoriented array is input axis j.
    ras_spacing = [0.0, 0.0, 0.0]
    for j, (axis, _) in enumerate(ornt):
        ras_spacing[int(axis)] = spacing[j]
    back = ornt_mod.ornt_transform(ornt_mod.axcodes2ornt(("R", "A", "S")), ornt)
    return ReaderView(
        ras.transpose(2, 1, 0),
        tuple(ras_spacing[::-1]),
        lambda a: ornt_mod.apply_orientation(a.transpose(2, 1, 0), back),
    )


def nonzero_box(array: np.ndarray) -> tuple[slice, slice, slice]:
    """Bounding box of the nonzero voxels (the whole array when none is).

    nnU-Net fills holes in the nonzero mask before taking its box; holes lie
    inside the box, so the box is the same without that (costly) step.
    """
    nonzero = array != 0
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(nonzero.any(axis=other))
        box.append(
            slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, array.shape[axis])
        )
    return tuple(box)  # type: ignore[return-value]


def _foreground_mask(cropped: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_fill_holes

    return binary_fill_holes(cropped != 0)


def normalise(cropped: np.ndarray, config: Configuration) -> np.ndarray:
    """A float32 copy of ``cropped`` normalised by the plans' scheme."""
    image = np.array(cropped, dtype=np.float32)
    scheme = config.normalization
    if scheme == "CTNormalization":
        p = config.intensity
        np.clip(image, p["percentile_00_5"], p["percentile_99_5"], out=image)
        image -= p["mean"]
        image /= max(p["std"], EPS)
    elif scheme == "ZScoreNormalization":
        if config.use_mask_for_norm:
            mask = _foreground_mask(cropped)
            values = image[mask]
            image[mask] = (values - values.mean()) / max(float(values.std()), EPS)
        else:
            mean, std = float(image.mean()), float(image.std())
            image -= mean
            image /= max(std, EPS)
    elif scheme == "RescaleTo01Normalization":
        image -= image.min()
        image /= max(float(image.max()), EPS)
    elif scheme == "RGBTo01Normalization":
        image /= 255.0
    # NoNormalization: the float32 copy as it is.
    return image
