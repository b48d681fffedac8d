"""Connected components and label boxes, shared by the refine steps.

Foreground components are 26-connected (voxels touching by a face, edge or corner
belong together), so a thin diagonal structure is not split into islands.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["FULL", "components", "label_boxes"]

FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected components of ``mask`` and the voxel count of each (index 0 unused)."""
    comp, n = ndimage.label(mask, structure=FULL)
    # Counting only the mask's voxels: a bincount of the whole array costs more than the labelling.
    return comp, np.bincount(comp[mask], minlength=n + 1)


def label_boxes(labels: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Every label's bounding box, in one pass."""
    return {v + 1: b for v, b in enumerate(ndimage.find_objects(labels)) if b is not None}
