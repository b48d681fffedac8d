"""Label-map refinement: clean up a network's segmentation, label by label.

The mask functions take and return boolean arrays. :func:`refine_labels` applies a
pipeline's :class:`~medrecon.pipeline.config.RefineStep` list to an integer label map.
For a multilabel map a step may only remove a label's voxels (set them to 0) or add
voxels that are 0 now: labels never overwrite one another.

Connectivity: foreground components are 26-connected (voxels touching by a face, edge
or corner belong together), so a thin diagonal structure is not split into islands.
The background is 6-connected, the complement of 26, so a cavity is a hole only if no
face-to-face path leads from it to the array border.

Every function treats voxels outside its array as background, which is what lets
:func:`refine_labels` work on each label's bounding box alone, with the same result as on
the whole volume: the boxes of all labels are found in one pass, and no step can move a
label outside its box (removal shrinks it, a filled hole lies inside it, a closing never
adds a voxel beyond the mask's extent on any axis), so they only need tightening.
Within a box, labels are cut further where empty slabs separate their voxels (see
:func:`_parts`), so that a few stray islands do not make a step pay for the whole volume.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from medrecon.pipeline.body import AIR_HU, outside_body
from medrecon.pipeline.components import components as _components
from medrecon.pipeline.components import label_boxes as _label_boxes
from medrecon.pipeline.config import ANATOMY_STEPS, IMAGE_STEPS, REFINE_STEPS, RefineStep
from medrecon.pipeline.lungs import lung_base_height
from medrecon.pipeline.refine_anatomy import (
    body_centre_lr,
    keep_above,
    keep_below,
    keep_below_lungs,
    keep_below_skull,
    keep_inside_body,
    keep_near_midline,
    remove_air_components,
)
from medrecon.pipeline.skull import skull_base_height

__all__ = [
    "keep_above",
    "keep_below",
    "keep_below_lungs",
    "keep_below_skull",
    "keep_inside_body",
    "keep_near_midline",
    "keep_largest_component",
    "remove_air_components",
    "remove_small_islands",
    "fill_holes",
    "smooth",
    "refine_labels",
]

log = logging.getLogger(__name__)

_MaskOp = Callable[[np.ndarray], np.ndarray]

_FACES = ndimage.generate_binary_structure(3, 1)  # 6-connectivity
# Float slack so that exact-looking values (radius 2.0, 100 mm3 / 0.5 mm3) stay exact.
_EPS = 1e-9


def keep_largest_component(mask: np.ndarray, keep_cut_pieces: bool = False) -> np.ndarray:
    """Only the largest 26-connected component of ``mask`` (ties: first in raster order).

    ``keep_cut_pieces``: also every component that touches a face of the array that the
    largest one touches. A scan's end or edge can cut an organ into pieces (a slab
    through the liver's dome holds both lobes, apart); those pieces all lie on the cut.
    """
    mask = np.asarray(mask, dtype=bool)
    whole = [tuple(slice(0, n) for n in mask.shape)]
    cut_at = ((0,) * mask.ndim, mask.shape) if keep_cut_pieces else None
    return _keep_largest_in_parts(mask, whole, cut_at)[0]


def remove_small_islands(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """``mask`` without its 26-connected components of fewer than ``min_voxels`` voxels."""
    mask = np.asarray(mask, dtype=bool)
    comp, counts = _components(mask)
    keep = counts >= min_voxels
    keep[0] = False
    return keep[comp]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its cavities filled: background regions (6-connected) that do not
    reach the array border."""
    mask = np.asarray(mask, dtype=bool)
    background, n = ndimage.label(~mask, structure=_FACES)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, dtype=bool)
    for axis in range(mask.ndim):
        for index in (0, -1):
            outside[np.take(background, index, axis=axis)] = True
    # Region 0 is the mask itself; every other region not seen on the border is a hole.
    outside[0] = False
    return ~outside[background]


def _ellipsoid(radius_vox: Sequence[float]) -> np.ndarray:
    """Structuring element: offsets ``b`` with ``sum((b_i / r_i) ** 2) <= 1``.

    An axis with ``r < 0.5`` gets no extent; ``0.5 <= r < 1`` counts as 1 so that a
    radius rounds to at least the nearest voxel instead of vanishing.
    """
    r = np.asarray(radius_vox, dtype=float)
    if r.ndim != 1 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"radius must be finite and >= 0 per axis, got {radius_vox!r}")
    r = np.where(r < 0.5, 0.0, np.maximum(r, 1.0))
    half = np.floor(r + _EPS).astype(int)
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    # An axis without extent has a single offset 0; dividing by 1 keeps it harmless.
    norm = sum((g / max(ri, 1.0)) ** 2 for g, ri in zip(grid, r))
    return np.asarray(norm <= 1 + _EPS)


def smooth(mask: np.ndarray, radius_vox: Sequence[float]) -> np.ndarray:
    """Morphological opening then closing of ``mask`` with an ellipsoid whose radii are
    ``radius_vox`` voxels per axis (see :func:`_ellipsoid`).

    The opening removes spurs and bridges thinner than the ellipsoid, the closing fills
    notches and gaps narrower than it; a shape wider than the ellipsoid keeps its size.
    """
    mask = np.asarray(mask, dtype=bool)
    if len(radius_vox) != mask.ndim:
        raise ValueError(f"radius has {len(radius_vox)} axes, mask has {mask.ndim}")
    se = _ellipsoid(radius_vox)
    if se.size == 1 or not mask.any():
        return mask.copy()
    # Zero padding wide enough for the dilation: the closing's erosion then sees the
    # mask's true surroundings, instead of eroding (or, with border_value=1, bridging to)
    # the array border.
    pad = [(s // 2 + 1,) * 2 for s in se.shape]
    work = np.pad(mask, pad)
    work = ndimage.binary_dilation(ndimage.binary_erosion(work, se), se)
    work = ndimage.binary_erosion(ndimage.binary_dilation(work, se), se)
    return work[tuple(slice(p, -p) for p, _ in pad)]


def _min_voxels(volume_mm3: float, spacing: np.ndarray) -> int:
    """A volume in mm3 as a voxel count, rounded up: a part of exactly that volume counts."""
    return math.ceil(float(volume_mm3) / float(np.prod(spacing)) - _EPS)


def _plan(step: RefineStep, spacing: np.ndarray) -> tuple[_MaskOp | None, list[int]]:
    """The step's mask function, with its mm parameter in voxels (None: keep the largest
    component, which needs all of a label's parts at once), and the gaps for :func:`_parts`.

    ValueError for an unknown kind or a missing parameter.
    """
    if step.kind not in REFINE_STEPS:
        known = ", ".join(REFINE_STEPS)
        raise ValueError(f"unknown refine step kind {step.kind!r} (known: {known})")
    needed = REFINE_STEPS[step.kind]
    missing = [name for name, required in needed.items() if required and name not in step.params]
    if missing:
        raise ValueError(f"refine step {step.kind!r} needs parameter(s) {', '.join(missing)}")
    if step.kind == "remove_small_islands":
        min_voxels = _min_voxels(step.params["min_volume_mm3"], spacing)
        return (lambda m: remove_small_islands(m, min_voxels)), [1, 1, 1]
    if step.kind == "smooth":
        radius = tuple(float(step.params["radius_mm"]) / spacing)
        return (lambda m: smooth(m, radius)), list(_ellipsoid(radius).shape)
    return (fill_holes if step.kind == "fill_holes" else None), [1, 1, 1]


def _parts(mask: np.ndarray, gaps: Sequence[int]) -> list[tuple[slice, ...]]:
    """Disjoint boxes, tight around ``mask``'s voxels, cut (recursively, along every axis)
    wherever ``gaps[axis]`` or more empty slices cross the whole box.

    A step on each box alone gives the same result as on the whole mask when the gaps are
    wide enough: 1 slice for components and holes (neither crosses an empty slice), the
    structuring element's width for smoothing (then a closing cannot bridge them). Stray
    islands would otherwise stretch a label's box over the volume, and every step on that
    label would pay for all of it.
    """
    done, todo = [], [tuple(slice(0, n) for n in mask.shape)]
    while todo:
        box = todo.pop()
        for axis in range(mask.ndim):
            others = tuple(a for a in range(mask.ndim) if a != axis)
            hit = np.flatnonzero(mask[box].any(axis=others))
            if hit.size == 0:
                break
            cut = np.flatnonzero(np.diff(hit) > gaps[axis])
            base = box[axis].start
            pieces = [
                (*box[:axis], slice(base + int(a), base + int(b) + 1), *box[axis + 1 :])
                for a, b in zip(np.r_[hit[0], hit[cut + 1]], np.r_[hit[cut], hit[-1]])
            ]
            if len(pieces) > 1:
                todo.extend(pieces)
                break
            box = pieces[0]
        else:
            done.append(box)
    return done


def _keep_largest_in_parts(
    mask: np.ndarray,
    parts: list[tuple[slice, ...]],
    cut_at: tuple[Sequence[int], Sequence[int]] | None = None,
) -> list[np.ndarray]:
    """keep_largest_component over ``parts`` that no component spans: a mask per part.

    ``cut_at``: (where ``mask`` starts in the volume, the volume's shape) to also keep
    every component that touches a face of the volume the largest one touches.
    """
    labelled = [_components(mask[p]) for p in parts]
    best = max((int(counts[1:].max(initial=0)) for _, counts in labelled), default=0)
    if best == 0:
        return [np.zeros(comp.shape, dtype=bool) for comp, _ in labelled]
    # Ties go to the first voxel in raster order, as in keep_largest_component.
    candidates = []
    for j, (part, (comp, counts)) in enumerate(zip(parts, labelled)):
        for k in np.flatnonzero(counts == best):
            local = np.unravel_index(int(np.argmax(comp == k)), comp.shape)
            first = np.ravel_multi_index([s.start + i for s, i in zip(part, local)], mask.shape)
            candidates.append((int(first), j, int(k)))
    _, win_part, win_k = min(candidates)
    keep = [np.zeros(counts.size, dtype=bool) for _, counts in labelled]
    keep[win_part][win_k] = True
    if cut_at is not None:
        faces = [_faces(comp, part, *cut_at) for part, (comp, _) in zip(parts, labelled)]
        won = faces[win_part][win_k - 1]
        for j, touched in enumerate(faces):
            for k, f in enumerate(touched, start=1):
                keep[j][k] |= bool(f & won)
    return [table[comp] for table, (comp, _) in zip(keep, labelled)]


def _faces(
    comp: np.ndarray, part: tuple[slice, ...], start: Sequence[int], shape: Sequence[int]
) -> list[set[tuple[int, int]]]:
    """Per component of ``comp`` (cut at ``part`` from a crop that starts at ``start`` in a
    volume of ``shape``), the volume faces it touches as (axis, 0 low / 1 high)."""
    touched = []
    for box in ndimage.find_objects(comp):
        faces = set()
        if box is not None:
            for axis, (b, p, s, n) in enumerate(zip(box, part, start, shape)):
                if s + p.start + b.start == 0:
                    faces.add((axis, 0))
                if s + p.start + b.stop == n:
                    faces.add((axis, 1))
        touched.append(faces)
    return touched


def _shift(inner: tuple[slice, ...], outer: tuple[slice, ...]) -> tuple[slice, ...]:
    """A box found in the crop ``outer`` as a box of the array ``outer`` was cut from."""
    return tuple(slice(o.start + i.start, o.start + i.stop) for i, o in zip(inner, outer))


def refine_labels(
    labels: np.ndarray,
    spacing: Sequence[float],
    steps: Sequence[RefineStep],
    affine: np.ndarray | None = None,
    image: np.ndarray | None = None,
    modality: str | None = None,
) -> np.ndarray:
    """Apply ``steps`` in order to the 3D integer label map ``labels``.

    Each step runs on each of its labels in increasing order (``step.labels`` None: every
    non-zero label present; absent labels are skipped). ``spacing`` is the voxel size in mm
    per axis; it turns ``min_volume_mm3`` into a voxel count (rounded up) and ``radius_mm``
    into per-axis voxel radii. The anatomy steps (:mod:`refine_anatomy`) need the
    voxel->RAS ``affine``; the image steps (``IMAGE_STEPS``: ``keep_near_midline``,
    ``keep_below_lungs``, ``keep_below_skull``, ``keep_inside_body``,
    ``remove_air_components``) also the ``image`` on the labels' grid and its
    ``modality``, for the body's midline, the lungs, the skull and air (all but the
    first act on a CT only). A step
    only removes a label's voxels or adds voxels that are 0: labels never overwrite one
    another. Returns a new array of the same dtype;
    ``labels`` is not modified.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 3D integer array, got {labels.dtype} {labels.shape}")
    spacing_arr = np.asarray(spacing, dtype=float)
    if spacing_arr.shape != (3,) or not np.all(spacing_arr > 0):
        raise ValueError(f"spacing must be 3 positive values in mm, got {spacing!r}")
    # Check every step before touching a voxel: a bad step fails fast, not half-way.
    plans = [_plan(step, spacing_arr) for step in steps]
    for step in steps:
        if (step.kind in ANATOMY_STEPS or step.kind in IMAGE_STEPS) and affine is None:
            raise ValueError(f"refine step {step.kind!r} needs the volume's affine")
        if step.kind in IMAGE_STEPS and image is None:
            raise ValueError(f"refine step {step.kind!r} needs the image")
        if step.kind in IMAGE_STEPS and np.shape(image)[:3] != np.shape(labels):
            raise ValueError(
                f"refine step {step.kind!r}: image {np.shape(image)} is not on the "
                f"labels' grid {np.shape(labels)}"
            )
    if image is not None and np.ndim(image) == 4 and np.shape(image)[3] == 1:
        image = np.asarray(image)[..., 0]
    out = labels.copy()
    if not steps or not out.any():
        return out
    if np.issubdtype(out.dtype, np.signedinteger) and out.min() < 0:
        raise ValueError("labels must not be negative")
    # Every label's box in one pass. Boxes stay valid (see the module docstring) and are
    # tightened after each step, so later steps only look at what is left.
    boxes = _label_boxes(out)
    centre = None  # the body's midline, found once if a step needs it
    # HU only mean something on a CT: elsewhere the lung and air steps do nothing.
    is_ct = (modality or "").upper() == "CT"
    for step, (op, gaps) in zip(steps, plans):
        if step.kind in ("keep_inside_body", "remove_air_components"):
            if is_ct:
                chosen = sorted(boxes.keys() if step.labels is None else step.labels)
                if step.kind == "remove_air_components":
                    remove_air_components(out, image, chosen, boxes, AIR_HU)
                else:
                    away = outside_body(image, affine, step.params["margin_mm"])
                    voxel_ml = float(np.prod(spacing_arr)) / 1000.0
                    keep_inside_body(out, away, chosen, voxel_ml, boxes)
                boxes = _label_boxes(out)
            continue
        if step.kind in ANATOMY_STEPS:
            affine_arr = np.asarray(affine, dtype=float)
            if step.kind == "keep_near_midline":
                if centre is None:
                    centre = (body_centre_lr(image, affine_arr, modality),)
                offset = float(step.params["max_offset_mm"])
                keep_near_midline(out, affine_arr, step.labels or (), centre[0], offset, boxes)
            elif step.kind == "keep_below_lungs":
                base = None
                if is_ct:
                    base = lung_base_height(image, affine_arr, step.params["min_lung_mm3"])
                keep_below_lungs(out, affine_arr, step.labels or (), base, boxes)
            elif step.kind == "keep_below_skull":
                skull = None
                if is_ct:
                    skull = skull_base_height(image, affine_arr, step.params["min_head_mm"])
                keep_below_skull(out, affine_arr, step.labels or (), skull, boxes)
            else:
                min_ref = _min_voxels(step.params.get("min_reference_mm3", 0.0), spacing_arr)
                rule = keep_below if step.kind == "keep_below" else keep_above
                rule(out, affine_arr, step.labels or (), step.reference, boxes, min_ref)
            boxes = _label_boxes(out)
            continue
        chosen = boxes.keys() if step.labels is None else set(step.labels) & boxes.keys()
        log.debug("refine %s on labels %s", step.kind, sorted(chosen))
        for v in sorted(chosen):
            crop = out[boxes[v]]  # a view: writes go straight into ``out``
            mask = crop == v
            parts = _parts(mask, gaps)
            if op is None:
                cut_at = None
                if step.params.get("keep_cut_pieces"):
                    cut_at = ([b.start for b in boxes[v]], out.shape)
                news = _keep_largest_in_parts(mask, parts, cut_at)
            else:
                news = [op(mask[p]) for p in parts]
            found = []
            for part, new in zip(parts, news):
                sub, old = crop[part], mask[part]
                sub[old & ~new] = 0
                sub[new & ~old & (sub == 0)] = v
                inner = ndimage.find_objects((sub == v).view(np.uint8))
                if inner:
                    found.append(_shift(_shift(inner[0], part), boxes[v]))
            if found:
                boxes[v] = tuple(
                    slice(min(b[a].start for b in found), max(b[a].stop for b in found))
                    for a in range(3)
                )
            else:
                del boxes[v]  # the label is gone; later steps skip it
    return out
