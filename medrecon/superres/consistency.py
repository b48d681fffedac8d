"""Data consistency: make a reconstruction reproduce the thick slices it came from.

The acquisition is linear: thick slice ``k`` is row ``k`` of the forward operator
``A`` (:func:`degrade.weight_matrix`) applied along the thick axis. The truth
satisfies ``A x = y``; projecting an estimate onto that set,
``x + A^T (A A^T + lam I)^-1 (y - A x)``, removes the part of its error that the
slices measured and keeps the rest, so (for ``lam`` -> 0 and an exact profile) it
can only move the estimate closer to the truth. Only slices whose profile lies
inside the fine grid take part; the edge slices' profiles run off it.
"""

from __future__ import annotations

import logging

import numpy as np

from medrecon.superres.degrade import as_operator, weight_matrix
from medrecon.superres.profile import SliceProfile

__all__ = ["project"]

log = logging.getLogger(__name__)


def project(
    estimate: np.ndarray,
    slices: np.ndarray,
    axis: int,
    profile: SliceProfile,
    h: float,
    centres: np.ndarray,
    *,
    lam: float = 1e-3,
) -> np.ndarray:
    """``estimate`` (fine grid, spacing ``h`` along ``axis``) made consistent with ``slices``.

    ``centres[k]`` is slice ``k``'s centre in mm from fine voxel 0 along ``axis``;
    ``lam`` regularises ``A A^T`` (overlapping Gaussian slices make it ill-conditioned).
    """
    n_fine = estimate.shape[axis]
    centres = np.asarray(centres, dtype=np.float64)
    lo, hi = -h / 2, (n_fine - 0.5) * h
    inside = (centres - profile.support >= lo - 1e-6) & (centres + profile.support <= hi + 1e-6)
    if inside.sum() < 1:
        log.debug("no slice lies wholly inside the fine grid: nothing to project")
        return estimate
    a = weight_matrix(profile, h, n_fine, centres[inside])
    x = np.moveaxis(np.asarray(estimate, dtype=np.float32), axis, -1)
    y = np.moveaxis(np.asarray(slices, dtype=np.float32), axis, -1)[..., inside]
    residual = y - x @ as_operator(a.T)
    gram = a @ a.T + lam * np.eye(len(a))
    # (r G^-1) A, with G symmetric: solve once for the small k x k system.
    step = as_operator(np.linalg.solve(gram, a))
    out = x + residual @ step
    return np.moveaxis(out, -1, axis)
