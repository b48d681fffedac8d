"""The skull on a CT: a landmark that says where the head is.

No organ of the trunk lies in the head. A network trained on abdomens that meets a head
CT it was not told about (a NIfTI carries no body part) can call the brain "bladder":
on the GE head CT of the DICOM validation set it labelled 405 mL of it there
(docs/models.md).

A head slice is an axial slice in which bone (at or above 300 HU) closes a ring around
at least 40 % of the body's cross-section, and what the ring holds reads as brain: a
median between 0 and 80 HU (brain, CSF and blood) and almost no fat. In the trunk the
ribs, the spine and the pelvis close no ring around most of the body, and what they
enclose holds fat or air (mesentery, bowel, lungs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medrecon.pipeline.body import (
    AIR_HU,
    IN_PLANE,
    SUPERIOR,
    air_outside_body,
    as_3d,
    sample_axial,
    sampled_heights,
)

__all__ = ["BONE_HU", "HeadExtent", "head_extent", "skull_base_height"]

log = logging.getLogger(__name__)

#: Cortical bone of the skull reads far above it; soft tissue and contrast-filled
#: vessels (< 300 HU in a venous phase) below.
BONE_HU = 300.0
#: Median HU of what the skull encloses: brain with CSF and blood in it.
BRAIN_MEDIAN_HU = (0.0, 80.0)
#: Fat, which brain does not hold and the abdomen does.
FAT_HU = (-150.0, -30.0)
#: Share of the body's cross-section the ring must enclose, and of that the most fat.
MIN_ENCLOSED = 0.4
MAX_FAT = 0.05
_SAMPLE_MM = 2.0  # in-plane and along the body: the skull is 4-10 mm thick
_MIN_BODY_CM2 = 10.0  # a crown of the head smaller than this is no slice to judge


@dataclass(frozen=True)
class HeadExtent:
    """Where a CT's head is: RAS S (mm) of its lowest and highest head slice, and how
    many mm of the body's axial extent are head slices."""

    lowest_mm: float
    highest_mm: float
    head_mm: float
    body_mm: float


def _head_rows(image: np.ndarray, affine: np.ndarray):
    """Per sampled axial slice (index 0 the lowest): is it a head slice, is there body in
    it; the sampling step along the body (mm) and each slice's RAS S (mm)."""
    image, affine = as_3d(image, affine, "the skull search")
    sample, order, spacing, step = sample_axial(image, affine, _SAMPLE_MM)
    body = ~air_outside_body(sample <= AIR_HU)
    bone = sample >= BONE_HU
    # Holes of the bone mask, filled per axial slice (IN_PLANE links no slices).
    enclosed = ndimage.binary_fill_holes(bone, structure=IN_PLANE) & ~bone & body
    cell_cm2 = float(spacing[0] * step[0] * spacing[1] * step[1]) / 100.0
    body_n = body.sum(axis=(0, 1))
    enclosed_n = enclosed.sum(axis=(0, 1))
    has_body = body_n * cell_cm2 >= _MIN_BODY_CM2
    head = has_body & (enclosed_n >= MIN_ENCLOSED * np.maximum(body_n, 1))
    lo, hi = BRAIN_MEDIAN_HU
    for k in np.flatnonzero(head):
        inside = sample[:, :, k][enclosed[:, :, k]]
        fat = np.count_nonzero((inside > FAT_HU[0]) & (inside < FAT_HU[1])) / inside.size
        head[k] = lo <= float(np.median(inside)) <= hi and fat <= MAX_FAT
    axis = order[2]
    heights = sampled_heights(image.shape, affine, axis, step[2], head.size)
    if affine[SUPERIOR, axis] < 0:  # index 0 the lowest slice from here on
        head, has_body, heights = head[::-1], has_body[::-1], heights[::-1]
    return head, has_body, float(spacing[2] * step[2]), heights


def head_extent(image: np.ndarray, affine: np.ndarray, min_head_mm: float) -> HeadExtent | None:
    """The head of a CT in HU (3D, voxel->RAS ``affine``): the highest run of consecutive
    head slices spanning at least ``min_head_mm``. None when there is none (a trunk)."""
    head, has_body, step_mm, heights = _head_rows(image, affine)
    runs, start = [], None
    for k, h in enumerate([*head, False]):
        if h and start is None:
            start = k
        elif not h and start is not None:
            runs.append((start, k - 1))
            start = None
    runs = [(a, b) for a, b in runs if (b - a + 1) * step_mm >= min_head_mm]
    if not runs:
        return None
    low, high = runs[-1]  # the head is the top of the body: the highest run
    found = HeadExtent(
        lowest_mm=float(heights[low]),
        highest_mm=float(heights[high]),
        head_mm=float(head.sum()) * step_mm,
        body_mm=float(has_body.sum()) * step_mm,
    )
    log.debug("skull: head slices from S %.0f to %.0f mm", found.lowest_mm, found.highest_mm)
    return found


def skull_base_height(image: np.ndarray, affine: np.ndarray, min_head_mm: float) -> float | None:
    """RAS S (mm) of the head's lowest slice (:func:`head_extent`), near the skull base;
    None on a scan without a head."""
    found = head_extent(image, affine, min_head_mm)
    return None if found is None else found.lowest_mm
