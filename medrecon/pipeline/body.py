"""The air around the body on a CT: where no organ can be.

In each axial slice, air (at or below -500 HU) that reaches the slice's edge is outside
the body; air enclosed by the body (lungs, bowel gas, the stomach's gas) is inside. A
network that meets a scan it does not know (a head CT through an abdomen model) can
label air around the patient as an organ; what lies there is removed.

Found on a grid sampled about every 2 mm per axis: the boundary is known to a sample,
which the margin covers.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "AIR_HU",
    "IN_PLANE",
    "SUPERIOR",
    "air_outside_body",
    "as_3d",
    "axial_order",
    "outside_body",
    "sample_axial",
    "sampled_heights",
]

AIR_HU = -500.0  # the body is above it (medrecon.foreground), air below
_SAMPLE_MM = 2.0
#: Row of the voxel->RAS affine that gives a voxel's height (RAS S).
SUPERIOR = 2
#: 4-connectivity within an axial slice only (the last axis runs along the body).
IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1, 1, :] = IN_PLANE[1, :, 1] = IN_PLANE[:, 1, 1] = True
IN_PLANE[1, 1, 0] = IN_PLANE[1, 1, 2] = False


def axial_order(affine: np.ndarray) -> list[int]:
    """Array axes with the one that runs along the body (closest to RAS S) last."""
    axis = int(np.argmax(np.abs(np.asarray(affine, dtype=float)[SUPERIOR, :3])))
    return [a for a in range(3) if a != axis] + [axis]


def as_3d(image: np.ndarray, affine: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray]:
    """``image`` as a 3D array (a trailing channel of one dropped) and ``affine`` as
    floats; ValueError naming ``who`` for any other shape."""
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[3] == 1:
        image = image[..., 0]
    if image.ndim != 3:
        raise ValueError(f"{who} needs a 3D image, got shape {image.shape}")
    return image, np.asarray(affine, dtype=float)


def sampled_heights(shape, affine: np.ndarray, axis: int, step: int, n: int) -> np.ndarray:
    """RAS S (mm) of the centre of each of ``n`` planes sampled every ``step`` voxels
    along array ``axis`` (from index 0) of an image of ``shape``."""
    centre = (np.asarray(shape, dtype=float) - 1.0) / 2.0
    centre[axis] = 0.0
    first = float(affine[SUPERIOR, :3] @ centre + affine[SUPERIOR, 3])
    return first + float(affine[SUPERIOR, axis]) * step * np.arange(n)


def sample_axial(image: np.ndarray, affine: np.ndarray, sample_mm: float):
    """``image`` with the axis along the body last (:func:`axial_order`), sampled about
    every ``sample_mm`` per axis: (sample, axis order, spacing in mm and sampling step
    per axis of the sample)."""
    order = axial_order(affine)
    spacing = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)[order]
    step = [max(1, round(sample_mm / float(sp))) for sp in spacing]
    moved = np.transpose(np.asarray(image), order)
    return np.ascontiguousarray(moved[:: step[0], :: step[1], :: step[2]]), order, spacing, step


def air_outside_body(air: np.ndarray) -> np.ndarray:
    """Of an ``air`` mask whose last axis runs along the body, the voxels in air regions
    (4-connected within each axial slice) that reach the slice's edge."""
    flat, _ = ndimage.label(air, structure=IN_PLANE)
    edge = np.unique(
        np.concatenate([flat[0].ravel(), flat[-1].ravel(), flat[:, 0].ravel(), flat[:, -1].ravel()])
    )
    outside = np.zeros(int(flat.max()) + 1, dtype=bool)
    outside[edge] = True
    outside[0] = False
    return outside[flat]


def outside_body(image: np.ndarray, affine: np.ndarray, margin_mm: float) -> np.ndarray:
    """Boolean mask on ``image``'s grid: air outside the body (CT in HU, voxel->RAS
    ``affine``) farther than ``margin_mm`` in-plane from it."""
    image = np.asarray(image)
    affine = np.asarray(affine, dtype=float)
    if image.ndim != 3:
        raise ValueError(f"outside_body needs a 3D image, got shape {image.shape}")
    sample, order, spacing, step = sample_axial(image, affine, _SAMPLE_MM)
    outside = air_outside_body(sample <= AIR_HU)
    # Keep only what is farther than the margin from the body, in each axial slice.
    cell = spacing[:2] * step[:2]
    reach = [int(np.ceil(margin_mm / float(c))) + 1 for c in cell]  # +1: the sample's own error
    if any(reach):
        body = ~outside
        grown = ndimage.maximum_filter(body, size=(2 * reach[0] + 1, 2 * reach[1] + 1, 1))
        outside &= ~grown
    # Back to the full grid: each voxel takes its sample's answer.
    shape = [image.shape[a] for a in order]
    index = np.ix_(*(np.arange(n) // s for n, s in zip(shape, step)))
    full = outside[index]
    return np.transpose(full, np.argsort(order))
