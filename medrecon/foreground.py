"""The image's foreground: voxels brighter than the air or background around the body.

Shared by reconstruct (body masks, the network's footprint) and segmentation's
refinement (the body's midline).
"""

from __future__ import annotations

import numpy as np

__all__ = ["foreground"]


def foreground(array: np.ndarray, modality: str | None = None, *, generous: bool = False):
    """Voxels brighter than the background: CT above -500 HU; otherwise (MR and unknown,
    no fixed scale) above the midpoint of the Otsu classes' means, or with ``generous``
    above Otsu's threshold itself (lower: dim tissue far from a coil stays in)."""
    array = np.asarray(array, dtype=np.float32)
    if (modality or "").upper() == "CT":
        return array > -500.0
    from skimage.filters import threshold_otsu

    t = threshold_otsu(array.ravel())  # a 3D array with 3 or 4 planes is no RGB image
    if generous:
        return array > t
    # Otsu's threshold sits at the low edge of an empty gap between background
    # and tissue; the midpoint of the two class means sits in the gap's middle.
    lo, hi = array[array <= t], array[array > t]
    if lo.size and hi.size:
        t = 0.5 * (float(lo.mean()) + float(hi.mean()))
    return array > t
