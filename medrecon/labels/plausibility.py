"""Is a segmented structure's volume plausible for what the pipeline expects?

A pipeline may declare, per label, the range of volumes (mL) the whole structure
has in adults (``expected_ml: [min, max]`` in its YAML). A result outside it is
not an error, since pathology and partial scans exist, but the user should
look: 400 mL of "bladder" in a chest or 2 mL of "liver" is a wrong answer, not a
measurement. A structure that touches the edge of the scanned volume may be cut
by the field of view, which the message says.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["edge_labels", "label_volumes", "volume_check", "volume_warnings"]


def volume_check(
    name: str, volume_ml: float, expected: tuple[float, float] | None, at_edge: bool
) -> str | None:
    """A one-line warning when ``volume_ml`` lies outside ``expected`` (else None)."""
    if expected is None or volume_ml <= 0:
        return None
    low, high = expected
    if low <= volume_ml <= high:
        return None
    side = "below" if volume_ml < low else "above"
    where = (
        "it touches the edge of the scanned volume, so it may be cut by the field of view"
        if at_edge and side == "below"
        else "check it in the preview or in Slicer"
    )
    return (
        f"{name}: {volume_ml:.1f} mL is {side} the {low:g}-{high:g} mL this pipeline expects "
        f"of a whole {name.replace('_', ' ')}; {where}"
    )


def label_volumes(array: np.ndarray, voxel_ml: float) -> dict[int, float]:
    """Volume in mL of every non-zero value of an integer label array."""
    counts = np.bincount(np.asarray(array).ravel().astype(np.int64, copy=False))
    return {int(v): float(c) * voxel_ml for v, c in enumerate(counts) if v and c}


def edge_labels(array: np.ndarray) -> set[int]:
    """Label values present on any face of the array (cut by the field of view)."""
    faces = []
    for axis in range(array.ndim):
        faces.append(np.take(array, 0, axis=axis).ravel())
        faces.append(np.take(array, -1, axis=axis).ravel())
    return {int(v) for v in np.unique(np.concatenate(faces)) if v}


def volume_warnings(array: np.ndarray, voxel_ml: float, labels: Iterable[Any]) -> list[str]:
    """Warnings for every label whose volume lies outside its ``expected_ml``."""
    volumes = label_volumes(array, voxel_ml)
    edge = edge_labels(array)
    out = []
    for label in labels:
        expected = getattr(label, "expected_ml", None)
        ml = volumes.get(label.value, 0.0)
        message = volume_check(label.name, ml, expected, label.value in edge)
        if message is not None:
            out.append(message)
    return out
