"""Synthetic test objects with known structure (tests and benchmarks only)."""

from __future__ import annotations

import numpy as np

__all__ = ["random_ellipsoids"]


def random_ellipsoids(n: int = 48, seed: int = 0, count: int = 14) -> np.ndarray:
    """An ``n``^3 float32 image of ``count`` overlapping sharp-edged random ellipsoids.

    The same statistics along every axis, so a stack's in-plane axes teach what its
    through-plane axis lost.
    """
    rng = np.random.default_rng(seed)
    g = np.meshgrid(*[np.arange(n, dtype=float)] * 3, indexing="ij")
    out = np.zeros((n, n, n), np.float32)
    for _ in range(count):
        c = rng.uniform(6, n - 6, 3)
        r = rng.uniform(3, 9, 3)
        inside = sum(((gi - ci) / ri) ** 2 for gi, ci, ri in zip(g, c, r)) <= 1
        out[inside] += rng.uniform(0.3, 1.0)
    return out
