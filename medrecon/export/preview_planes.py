"""Which slices the preview shows, so every label found appears in at least one.

A slice through the centroid of all labels misses small or outlying structures
(adrenal glands, lung bases, femoral heads). Here each label counts as shown in a
slice when its cross-section there is at least ``VISIBLE_FRACTION`` of its
largest in that orientation (a sliver is not "shown"). The three main slices
start at the centroid and move, one axis at a time, to the slice showing the most
labels not shown by the other two (ties: the most labelled area, then the nearer
slice); labels still missing get extra panels, each the slice showing the most of
them, up to ``MAX_EXTRA``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_EXTRA", "VISIBLE_FRACTION", "choose_slices", "slice_areas"]

VISIBLE_FRACTION = 0.25
MAX_EXTRA = 6
_PLANE_VOXELS = 65_536  # counted per plane at most: a 512x512 plane every 2nd row/column
_ROUNDS = 3


def slice_areas(lab: np.ndarray, values: Sequence[int]) -> list[np.ndarray]:
    """Per axis, voxel counts (len(values), lab.shape[axis]) of each value in each slice.

    Large planes are counted on every ``step``-th row and column (``_PLANE_VOXELS``
    per plane at most), in proportion; a value too thin to be hit that way is
    counted exactly, in its own bounding box.
    """
    top = int(lab.max()) + 1 if lab.size else 1
    rows = np.asarray(values, dtype=np.int64)
    out = []
    for axis in range(3):
        plane_size = lab.size // max(lab.shape[axis], 1)
        step = max(1, int(np.ceil(np.sqrt(plane_size / _PLANE_VOXELS))))
        sample = np.moveaxis(lab, axis, 0)[:, ::step, ::step]
        counts = np.empty((len(rows), lab.shape[axis]), dtype=np.int64)
        for i in range(lab.shape[axis]):
            counts[:, i] = np.bincount(sample[i].ravel(), minlength=top)[rows] * step * step
        for r in np.flatnonzero(counts.max(axis=1) == 0):
            counts[r] = _exact_counts(lab, int(rows[r]), axis)
        out.append(counts)
    return out


def _exact_counts(lab: np.ndarray, value: int, axis: int) -> np.ndarray:
    mask = lab == value
    other = tuple(a for a in range(3) if a != axis)
    return np.count_nonzero(mask, axis=other).astype(np.int64)


def _visible(areas: list[np.ndarray]) -> list[np.ndarray]:
    result = []
    for counts in areas:
        best = counts.max(axis=1, keepdims=True)
        result.append((counts > 0) & (counts >= VISIBLE_FRACTION * best))
    return result


def choose_slices(
    lab: np.ndarray, values: Sequence[int], centre: np.ndarray
) -> tuple[tuple[int, int, int], list[tuple[int, int]], list[int]]:
    """Main slice indices (x, y, z) on the RAS-ordered grid, extra (axis, index)
    slices, and the values shown in none of them (when ``MAX_EXTRA`` ran out)."""
    start = tuple(int(np.clip(np.rint(c), 0, n - 1)) for c, n in zip(centre, lab.shape))
    if not len(values):
        return start, [], []  # type: ignore[return-value]
    areas = slice_areas(lab, values)
    visible = _visible(areas)
    share = [a / np.maximum(a.max(axis=1, keepdims=True), 1) for a in areas]
    index = list(start)
    for _ in range(_ROUNDS):
        before = list(index)
        for axis in (2, 1, 0):  # axial first: it usually shows the most organs
            others = np.zeros(len(values), dtype=bool)
            for a in range(3):
                if a != axis:
                    others |= visible[a][:, index[a]]
            new = (~others).astype(np.int64) @ visible[axis]
            score = (
                new * 1e6
                + share[axis].sum(axis=0)
                - 1e-3 * np.abs(np.arange(lab.shape[axis]) - index[axis])
            )
            index[axis] = int(np.argmax(score))
        if index == before:
            break
    shown = np.zeros(len(values), dtype=bool)
    for a in range(3):
        shown |= visible[a][:, index[a]]
    extra: list[tuple[int, int]] = []
    while not shown.all() and len(extra) < MAX_EXTRA:
        best = None
        for axis in (2, 1, 0):
            score = (~shown).astype(np.int64) @ visible[axis] * 1e6 + share[axis].sum(axis=0)
            i = int(np.argmax(score))
            if best is None or score[i] > best[0]:
                best = (score[i], axis, i)
        assert best is not None
        _, axis, i = best
        extra.append((axis, i))
        shown |= visible[axis][:, i]
    missing = [int(v) for v, s in zip(values, shown) if not s]
    return (index[0], index[1], index[2]), extra, missing
