"""Class probabilities on the model grid -> labels on the native grid.

The model grid and the native grid are both known by their voxel -> RAS
affines, so native voxel ``n`` sits at model voxel ``inv(A_model) @ A_native @ n``.
Probabilities are interpolated linearly there and the label is their argmax,
as ``Invertd`` followed by ``AsDiscreted(argmax=True)`` would do, but slab by
slab along the native k axis, so the full C x native probability array never
exists unless it is asked for. A model voxel is taken to cover its whole
extent (half a voxel beyond the outermost centres); native voxels beyond that
(cropped away before inference) are background.

Orientation and spacing transforms keep grid axes parallel, so the usual
mapping is a signed permutation with scaling and the interpolation is done
separably, one axis at a time; any other mapping uses ``grid_sample``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["model_to_native", "native_to_model_map"]

logger = logging.getLogger(__name__)

#: Voxels per slab (native grid); x C x 4 bytes is the slab's working memory.
_SLAB_VOXELS = 1 << 21
#: Coordinates this close to an integer are taken as that integer, so grids
#: that share voxel centres reproduce the model's values exactly.
_SNAP = 1e-5


def native_to_model_map(model_affine: np.ndarray, native_affine: np.ndarray) -> np.ndarray:
    """4x4 map from native voxel indices to (fractional) model voxel indices."""
    return np.linalg.inv(model_affine) @ native_affine


def _axis_permutation(m: np.ndarray) -> list[int] | None:
    """For each native axis, the model axis it runs along; None if axes are not parallel."""
    lin = m[:3, :3]
    scale = np.abs(lin).max()
    perm = []
    for a in range(3):
        col = np.abs(lin[:, a]) > 1e-6 * scale
        if col.sum() != 1:
            return None
        perm.append(int(np.argmax(col)))
    return perm if sorted(perm) == [0, 1, 2] else None


def _snap(c: np.ndarray) -> np.ndarray:
    r = np.round(c)
    return np.where(np.abs(c - r) < _SNAP, r, c)


def _interp_axis(sub: torch.Tensor, axis: int, coords: np.ndarray) -> torch.Tensor:
    """Linear interpolation of ``sub`` along ``axis`` at fractional indices ``coords``
    (already clamped to [0, n-1])."""
    import torch

    n = sub.shape[axis]
    i0 = np.clip(np.floor(coords).astype(np.int64), 0, n - 1)
    w = (coords - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n - 1)
    dev = sub.device
    a = sub.index_select(axis, torch.from_numpy(i0).to(dev))
    if not np.any(w):
        return a
    b = sub.index_select(axis, torch.from_numpy(i1).to(dev))
    shape = [1] * sub.ndim
    shape[axis] = len(coords)
    wt = torch.from_numpy(w).to(dev).reshape(shape)
    return torch.lerp(a, b, wt)


def _slab_separable(probs, m, perm, shape, k0, k1):
    """(C, X, Y, k1-k0) probabilities for one native slab."""
    ranges = [np.arange(shape[0]), np.arange(shape[1]), np.arange(k0, k1)]
    coords, lo_hi = [], []
    for a in range(3):
        p = perm[a]
        c = _snap(m[p, a] * ranges[a] + m[p, 3])
        n = probs.shape[1 + p]
        c = np.clip(c, 0, n - 1)
        lo, hi = int(np.floor(c.min())), int(np.ceil(c.max()))
        coords.append(c - lo)
        lo_hi.append((p, lo, hi + 1))
    index = [slice(None)] * 4
    for p, lo, hi in lo_hi:
        index[1 + p] = slice(lo, hi)
    sub = probs[tuple(index)].permute(0, 1 + perm[0], 1 + perm[1], 1 + perm[2])
    for a in range(3):
        sub = _interp_axis(sub, 1 + a, coords[a])
    return sub


def _slab_general(probs, m, shape, k0, k1):
    """Same as :func:`_slab_separable` for any affine mapping, with ``grid_sample``."""
    import torch
    import torch.nn.functional as F

    ii, jj, kk = np.meshgrid(
        np.arange(shape[0]), np.arange(shape[1]), np.arange(k0, k1), indexing="ij"
    )
    ijk = np.stack([ii, jj, kk], axis=-1).reshape(-1, 3).astype(np.float64)
    c = _snap(ijk @ m[:3, :3].T + m[:3, 3])
    sizes = np.asarray(probs.shape[1:], dtype=np.float64)
    # grid_sample with align_corners=True: -1 and +1 are the first and last voxel
    # centres; its last grid axis lists (W, H, D) = model axes (2, 1, 0).
    norm = 2.0 * c / np.maximum(sizes - 1, 1) - 1.0
    grid = torch.from_numpy(norm[:, ::-1].astype(np.float32).copy()).reshape(1, *ii.shape, 3)
    grid = grid.to(probs.device)
    out = F.grid_sample(
        probs.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0]


def model_to_native(
    probs: torch.Tensor,
    model_affine: np.ndarray,
    native_affine: np.ndarray,
    native_shape: tuple[int, int, int],
    *,
    label_dtype: np.dtype = np.uint8,
    with_probabilities: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Argmax labels (and optionally probabilities, (X, Y, Z, C) float32) on the native grid.

    ``probs`` is (C, X', Y', Z') float32 on any device: channel c is the probability
    of label value c; channel 0 is background.
    """
    import torch

    probs = probs.float().contiguous()
    m = native_to_model_map(np.asarray(model_affine), np.asarray(native_affine))
    perm = _axis_permutation(m)
    shape = tuple(int(n) for n in native_shape)
    n_ch = int(probs.shape[0])
    labels = np.zeros(shape, dtype=label_dtype)
    out_probs = np.empty((*shape, n_ch), dtype=np.float32) if with_probabilities else None
    slab = max(1, _SLAB_VOXELS // max(1, shape[0] * shape[1]))
    with torch.inference_mode():
        for k0 in range(0, shape[2], slab):
            k1 = min(shape[2], k0 + slab)
            if perm is not None:
                values = _slab_separable(probs, m, perm, shape, k0, k1)
            else:
                values = _slab_general(probs, m, shape, k0, k1)
            # argmax where the probabilities are (GPU or CPU); only labels travel back.
            best = values.argmax(dim=0).to(torch.int32).cpu().numpy()
            labels[:, :, k0:k1] = best
            if out_probs is not None:
                out_probs[:, :, k0:k1] = values.permute(1, 2, 3, 0).cpu().numpy()
    return labels, out_probs
