"""The lungs on a CT: a landmark that says where the chest is.

The abdominal organs lie below the diaphragm, and the diaphragm lies where the lungs
narrow to their bases. A chest CT gives a network trained on abdomens nothing it knows,
and it can call mediastinum "bladder" or the lung apex's soft tissue "kidney"
(docs/models.md); the lungs tell which part of such a scan is chest.

The lungs are the largest region of air inside the body (enclosed in its axial
cross-section, so the trachea leaving the scan does not join it to the air outside),
when that region is large and reads as aerated lung rather than gas: lung parenchyma
with its vessels has a median of about -850 HU, gas in bowel (a distended or
insufflated colon can hold litres) reads close to -1000 HU.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from medrecon.pipeline.body import (
    AIR_HU,
    SUPERIOR,
    air_outside_body,
    as_3d,
    sample_axial,
    sampled_heights,
)

__all__ = ["LUNG_MEDIAN_HU", "lung_base_height"]

log = logging.getLogger(__name__)

#: Median HU a region of air inside the body must have to count as lung: aerated
#: parenchyma (emphysema included) lies within, gas in bowel below.
LUNG_MEDIAN_HU = (-950.0, -600.0)
_SAMPLE_MM = 4.0  # sampling: a landmark for organs several cm away needs no finer


def lung_base_height(image: np.ndarray, affine: np.ndarray, min_lung_mm3: float) -> float | None:
    """RAS S (mm) of the lung bases: the lowest axial slice whose lung cross-section is
    at least half the largest one. Below it, within a few cm, is the diaphragm's dome.

    ``image`` is a CT in HU (3D, voxel->RAS ``affine``). None when there is no air region
    inside the body of ``min_lung_mm3`` or more whose median reads as lung, or when the
    lungs are still at least half their widest on the scan's top slice (the widest part
    may lie above the scan): an abdominal scan that holds only the lung bases, or none,
    gets no landmark.
    """
    image, affine = as_3d(image, affine, "lung_base_height")
    sample, order, _, step = sample_axial(image, affine, _SAMPLE_MM)
    axis = order[2]  # the array axis that runs along the body
    air = sample <= AIR_HU
    air &= ~air_outside_body(air)  # the air around the body is no lung
    comp, n = ndimage.label(air)
    if n == 0:
        return None
    counts = np.bincount(comp.ravel())
    counts[0] = 0
    k = int(np.argmax(counts))
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3])) * float(np.prod(step))
    if counts[k] * voxel_mm3 < min_lung_mm3:
        return None
    lung = comp == k
    median = float(np.median(sample[lung]))
    lo, hi = LUNG_MEDIAN_HU
    if not lo <= median <= hi:
        ml = counts[k] * voxel_mm3 / 1e3
        log.debug("refine: %.0f mL of air inside the body reads %.0f HU: not lung", ml, median)
        return None
    area = lung.sum(axis=(0, 1))
    if affine[SUPERIOR, axis] < 0:  # index 0 the lowest slice from here on
        area = area[::-1]
    wide = np.flatnonzero(area >= 0.5 * area.max())
    # Half the widest is only known when the widest is in view: the lungs must narrow
    # again above it. An abdominal scan that ends in the lower lungs has its widest lung
    # slice at its top, and its "half" would lie wherever the scan happened to end.
    if wide.max() == area.size - 1:
        log.debug("refine: the lungs are widest at the scan's top: no lung-base landmark")
        return None
    base = int(wide.min())
    if affine[SUPERIOR, axis] < 0:
        base = area.size - 1 - base
    return float(sampled_heights(image.shape, affine, axis, step[2], area.size)[base])
