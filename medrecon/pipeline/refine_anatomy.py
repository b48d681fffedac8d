"""Refinement by anatomy: where in the patient a label may lie.

Organs keep their order in every body: along the long axis the bladder lies below the
liver and the spleen above the bladder; across it the aorta and the inferior vena cava
run in front of the spine, near the body's left-right middle. A network that has seen
few bodies can break these rules on a partial field of view (a muscle at the edge of a
pelvic slab called "spleen" or "aorta"); these steps remove the components that do.

Positions are scanner coordinates from the voxel->RAS ``affine`` (RAS S for height,
RAS R-L for the side), whatever the array order. A reference label counts only through
its largest 26-connected component, and only if that holds at least
``min_reference_voxels``: a crumb of "liver" in the pelvis is no landmark. An absent
reference imposes nothing, so these steps never remove an organ for lack of context.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from medrecon.foreground import foreground
from medrecon.pipeline.body import SUPERIOR
from medrecon.pipeline.components import components, label_boxes

__all__ = [
    "body_centre_lr",
    "keep_above",
    "keep_below",
    "keep_below_lungs",
    "keep_below_skull",
    "keep_inside_body",
    "keep_near_midline",
    "remove_air_components",
]

log = logging.getLogger(__name__)

_LEFT_RIGHT = 0  # row of the voxel->RAS affine (RAS S: body.SUPERIOR)


def _mm(affine: np.ndarray, ijk: np.ndarray, row: int) -> np.ndarray:
    """One RAS coordinate (mm) of voxel positions ``ijk`` ((N, 3) indices)."""
    return ijk @ affine[row, :3] + affine[row, 3]


def _components(labels: np.ndarray, value: int, box: tuple[slice, ...]):
    """(crop view, mask, component map, voxel counts, box offset) of ``value`` in ``box``."""
    crop = labels[box]
    mask = crop == value
    comp, counts = components(mask)
    return crop, mask, comp, counts, np.array([b.start for b in box], dtype=float)


def _each_components(labels: np.ndarray, values: Sequence[int], boxes):
    """For each label in ``values`` that is present: (value, crop view, mask, component
    map, voxel counts, box offset), as :func:`_components` gives them."""
    for v in values:
        if v not in boxes:
            continue
        parts = _components(labels, v, boxes[v])
        if parts[3].size >= 2:  # at least one component besides the background
            yield (v, *parts)


def _reference_heights(labels, affine, reference, boxes, min_voxels: int) -> list[tuple]:
    """(lowest, highest) RAS S of each reference's largest component, where it is big
    enough."""
    found = []
    for ref, _, _, comp, counts, offset in _each_components(labels, reference, boxes):
        k = int(np.argmax(counts[1:])) + 1
        if counts[k] < max(1, min_voxels):
            log.debug("refine: reference label %d too small (%d voxels)", ref, counts[k])
            continue
        heights = _mm(affine, np.argwhere(comp == k) + offset, SUPERIOR)
        found.append((float(heights.min()), float(heights.max())))
    return found


def _remove_where(labels, affine, values, boxes, row: int, bad, why: str) -> np.ndarray:
    """Remove each component of ``values`` whose centre's RAS coordinate ``row`` makes
    ``bad(coordinate)`` true; log each removal with ``why(coordinate)``."""
    for v, crop, mask, comp, counts, offset in _each_components(labels, values, boxes):
        # Centres from per-component coordinate sums: much faster than
        # ndimage.center_of_mass on a large box.
        ijk, which = np.nonzero(mask), comp[mask]
        sums = np.stack([np.bincount(which, weights=i, minlength=counts.size) for i in ijk], 1)
        centres = sums[1:] / counts[1:, None] + offset
        for i, centre in enumerate(centres, start=1):
            c = float(_mm(affine, centre[None], row)[0])
            if bad(c):
                crop[comp == i] = 0  # ``crop`` is a view: the removal lands in ``labels``
                log.info(
                    "refine: removed a component of label %d (%d voxels) %s",
                    v, int(counts[i]), why(c),
                )  # fmt: skip
    return labels


def _keep_side(labels, affine, values, reference, boxes, min_voxels: int, below: bool):
    """keep_below (``below``) or keep_above: the limit is the lowest (highest) point of
    the references present, and components centred above (below) it go."""
    boxes = label_boxes(labels) if boxes is None else boxes
    found = _reference_heights(labels, affine, reference, boxes, min_voxels)
    if not found:
        return labels
    if below:
        limit = min(low for low, _ in found)
        bad, where = (lambda s: s > limit), "above the lowest"
    else:
        limit = max(high for _, high in found)
        bad, where = (lambda s: s < limit), "below the highest"
    return _remove_where(
        labels, affine, values, boxes, SUPERIOR, bad,
        lambda s: f"centred {abs(s - limit):.0f} mm {where} point of {list(reference)}",
    )  # fmt: skip


def keep_below(
    labels: np.ndarray,
    affine: np.ndarray,
    values: Sequence[int],
    reference: Sequence[int],
    boxes: dict[int, tuple[slice, ...]] | None = None,
    min_reference_voxels: int = 0,
) -> np.ndarray:
    """Remove each component of a label in ``values`` whose centre lies above the lowest
    voxel of a ``reference`` label (the lowest of those present). Modifies and returns
    ``labels``; ``boxes`` (label -> bounding box) spares finding them again."""
    return _keep_side(labels, affine, values, reference, boxes, min_reference_voxels, True)


def keep_above(
    labels: np.ndarray,
    affine: np.ndarray,
    values: Sequence[int],
    reference: Sequence[int],
    boxes: dict[int, tuple[slice, ...]] | None = None,
    min_reference_voxels: int = 0,
) -> np.ndarray:
    """Remove each component of a label in ``values`` whose centre lies below the highest
    voxel of a ``reference`` label (the highest of those present): the mirror of
    :func:`keep_below`. Modifies and returns ``labels``."""
    return _keep_side(labels, affine, values, reference, boxes, min_reference_voxels, False)


def body_centre_lr(image: np.ndarray, affine: np.ndarray, modality: str | None) -> float | None:
    """RAS R-L coordinate (mm) of the body's centre of mass: the image's foreground
    (CT above -500 HU, otherwise Otsu), sampled every 4th voxel per axis (a centre of
    mass needs no more). None for an image without foreground."""
    step = 4
    sample = np.asarray(image)[::step, ::step, ::step]
    fg = foreground(sample, modality)
    if not fg.any():
        return None
    return float(_mm(affine, np.argwhere(fg).mean(axis=0, keepdims=True) * step, _LEFT_RIGHT)[0])


def keep_near_midline(
    labels: np.ndarray,
    affine: np.ndarray,
    values: Sequence[int],
    centre_mm: float | None,
    max_offset_mm: float,
    boxes: dict[int, tuple[slice, ...]] | None = None,
) -> np.ndarray:
    """Remove each component of a label in ``values`` whose centre lies more than
    ``max_offset_mm`` to the left or right of ``centre_mm`` (RAS R-L, e.g.
    :func:`body_centre_lr`). ``centre_mm`` None imposes nothing. Modifies and returns
    ``labels``."""
    if centre_mm is None:
        return labels
    boxes = label_boxes(labels) if boxes is None else boxes
    return _remove_where(
        labels, affine, values, boxes, _LEFT_RIGHT,
        lambda x: abs(x - centre_mm) > max_offset_mm,
        lambda x: f"centred {abs(x - centre_mm):.0f} mm from the body's midline",
    )  # fmt: skip


def _keep_centred_below(labels, affine, values, limit_mm, boxes, landmark: str):
    """Remove each component of ``values`` centred above RAS S ``limit_mm`` (an image
    landmark, named ``landmark`` in the log); None imposes nothing."""
    if limit_mm is None:
        return labels
    boxes = label_boxes(labels) if boxes is None else boxes
    return _remove_where(
        labels, affine, values, boxes, SUPERIOR,
        lambda s: s > limit_mm,
        lambda s: f"centred {s - limit_mm:.0f} mm above {landmark}",
    )  # fmt: skip


def keep_below_lungs(
    labels: np.ndarray,
    affine: np.ndarray,
    values: Sequence[int],
    base_mm: float | None,
    boxes: dict[int, tuple[slice, ...]] | None = None,
) -> np.ndarray:
    """Remove each component of a label in ``values`` whose centre lies above
    ``base_mm`` (RAS S of the lung bases, :func:`medrecon.pipeline.lungs.lung_base_height`):
    an abdominal organ is centred below the diaphragm. ``base_mm`` None imposes nothing.
    Modifies and returns ``labels``."""
    return _keep_centred_below(labels, affine, values, base_mm, boxes, "the lung bases")


def keep_below_skull(
    labels: np.ndarray,
    affine: np.ndarray,
    values: Sequence[int],
    skull_mm: float | None,
    boxes: dict[int, tuple[slice, ...]] | None = None,
) -> np.ndarray:
    """Remove each component of a label in ``values`` whose centre lies above
    ``skull_mm`` (RAS S of the head's lowest slice,
    :func:`medrecon.pipeline.skull.skull_base_height`): no organ of the trunk lies in
    the head. ``skull_mm`` None imposes nothing. Modifies and returns ``labels``."""
    return _keep_centred_below(labels, affine, values, skull_mm, boxes, "the head's lowest slice")


def keep_inside_body(
    labels: np.ndarray,
    outside: np.ndarray,
    values: Sequence[int],
    voxel_ml: float,
    boxes: dict[int, tuple[slice, ...]],
) -> np.ndarray:
    """Set to 0 the voxels of each label in ``values`` that lie where ``outside`` (the
    air around the body, :func:`medrecon.pipeline.body.outside_body`) is True. Modifies
    and returns ``labels``."""
    for v in values:
        if v not in boxes:
            continue
        crop = labels[boxes[v]]  # a view: writes go straight into ``labels``
        away = (crop == v) & outside[boxes[v]]
        n = int(np.count_nonzero(away))
        if n:
            crop[away] = 0
            log.info(
                "refine: removed %.1f mL of label %d in the air around the body", n * voxel_ml, v
            )
    return labels


def remove_air_components(
    labels: np.ndarray,
    image: np.ndarray,
    values: Sequence[int],
    boxes: dict[int, tuple[slice, ...]],
    air_hu: float,
) -> np.ndarray:
    """Remove each component of a label in ``values`` whose median in ``image`` (a CT in
    HU, on the labels' grid) is at or below ``air_hu``: a solid organ or a vessel is
    tissue, so a part that reads as air is the network's mistake. Modifies and returns
    ``labels``."""
    from scipy import ndimage

    for v, crop, _, comp, counts, _ in _each_components(labels, values, boxes):
        index = np.arange(1, counts.size)
        medians = ndimage.median(np.asarray(image[boxes[v]]), comp, index)
        for i, median in zip(index, np.atleast_1d(medians)):
            if median <= air_hu:
                crop[comp == i] = 0
                log.info(
                    "refine: removed a component of label %d (%d voxels) reading %.0f HU: air",
                    v, int(counts[i]), median,
                )  # fmt: skip
    return labels
