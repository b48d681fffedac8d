"""Refinement that knows where organs lie: the ``keep_below`` step.

A network that has seen few bodies can label a structure where it can never be: the
shipped abdomen model calls part of the liver "urinary bladder" on a slab that ends at
the liver's widest point, and a chest CT's heart "urinary bladder". Position along the
body's long axis is the one fact about those organs that holds in every patient, so the
step uses it, in scanner coordinates (RAS S), whatever the array's orientation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["keep_below"]

log = logging.getLogger(__name__)

_FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity, as in refine.py


def _superior_mm(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """RAS S (mm) of the voxel centres ``ijk`` ((N, 3) indices)."""
    return ijk @ affine[2, :3] + affine[2, 3]


def _box(labels: np.ndarray, value: int) -> tuple[slice, ...] | None:
    """Bounding box of ``value`` (None if absent): the work stays off the empty volume."""
    found = ndimage.find_objects((labels == value).view(np.uint8))
    return found[0] if found else None


def _offset(box: tuple[slice, ...]) -> np.ndarray:
    return np.array([b.start for b in box], dtype=float)


def _lowest_of_largest(labels: np.ndarray, value: int, affine: np.ndarray) -> float | None:
    """S of the lowest voxel of ``value``'s largest component; None if absent.

    The largest component, so that a stray island far down does not move the limit.
    """
    box = _box(labels, value)
    if box is None:
        return None
    mask = labels[box] == value
    comp, n = ndimage.label(mask, structure=_FULL)
    if n > 1:
        sizes = np.bincount(comp[mask], minlength=n + 1)
        mask = comp == int(np.argmax(sizes[1:]) + 1)
    return float(_superior_mm(affine, np.argwhere(mask) + _offset(box)).min())


def keep_below(
    labels: np.ndarray, affine: np.ndarray, values: Sequence[int], reference: Sequence[int]
) -> np.ndarray:
    """Remove each 26-connected component of a label in ``values`` whose centroid lies
    above the lowest voxel of a ``reference`` label's largest component (RAS S, from the
    voxel->RAS ``affine``). References that are absent impose nothing. Modifies and
    returns ``labels``.
    """
    limits = {}
    for ref in reference:
        low = _lowest_of_largest(labels, ref, affine)
        if low is not None:
            limits[ref] = low
    if not limits:
        return labels
    limit = min(limits.values())  # kept components lie below every reference present
    for v in values:
        box = _box(labels, v)
        if box is None:
            continue
        crop = labels[box]  # a view: removals land in ``labels``
        mask = crop == v
        comp, n = ndimage.label(mask, structure=_FULL)
        centres = ndimage.center_of_mass(mask, comp, range(1, n + 1))
        for i, centre in enumerate(centres, start=1):
            s = float(_superior_mm(affine, (np.asarray(centre) + _offset(box))[None])[0])
            if s > limit:
                gone = comp == i
                crop[gone] = 0
                log.info(
                    "refine keep_below: removed a component of label %d (%d voxels) "
                    "centred %.0f mm above the lowest point of label(s) %s",
                    v, int(gone.sum()), s - limit, sorted(limits),
                )  # fmt: skip
    return labels
