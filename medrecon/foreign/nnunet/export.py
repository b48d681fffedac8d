"""Logits on the network's grid -> labels on the cropped input grid.

nnU-Net resamples every logit channel to the full input size (order 1 by
default, nearest along a separately treated axis), then takes softmax and
argmax (or sigmoid > 0.5 per region). Softmax does not change the argmax and
sigmoid > 0.5 is logit > 0, so this resamples a slab of rows at a time and
takes the labels at once, never holding all channels at full size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medrecon.foreign.nnunet.plans import LabelScheme
from medrecon.foreign.nnunet.resample import resample_array, sample_positions

__all__ = ["logits_to_labels"]

#: Bytes of float32 resampled logits held at once.
SLAB_BYTES = 256 * 2**20


def _row_weights(n_in: int, n_out: int, order: int):
    """Per output row: the two input rows and their weights (order 0 or 1)."""
    x = sample_positions(n_in, n_out)
    if order == 0:
        lo = np.clip(np.floor(x + 0.5).astype(np.int64), 0, n_in - 1)
        return lo, lo, np.zeros(n_out, np.float32)
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    return lo, np.minimum(lo + 1, n_in - 1), (x - lo).astype(np.float32)


def _labels_from(logits, scheme: LabelScheme, dtype):
    """Labels from a ``(heads, ...)`` torch tensor."""
    import torch

    if scheme.regions is None:
        return logits.argmax(0).to(torch.uint8 if dtype == np.uint8 else torch.int32)
    out = torch.zeros(logits.shape[1:], dtype=torch.int32, device=logits.device)
    for head, value in enumerate(scheme.regions_class_order):
        out[logits[head] > 0] = value
    return out


def _plane(rows, size, order: int):
    """Resize the last two axes of ``rows`` (rows, heads, a, b) to ``size``."""
    import torch.nn.functional as F

    mode = "bilinear" if order == 1 else "nearest-exact"
    kwargs = {"align_corners": False} if order == 1 else {}
    return F.interpolate(rows, size=tuple(size), mode=mode, **kwargs)


def logits_to_labels(
    logits, shape: Sequence[int], orders: Sequence[int], scheme: LabelScheme, dtype
) -> np.ndarray:
    """Labels (numpy ``dtype``) of ``logits`` (torch, heads x 3-D) resized to ``shape``."""
    import torch

    shape = tuple(int(s) for s in shape)
    if tuple(logits.shape[1:]) == shape:
        return _labels_from(logits, scheme, dtype).cpu().numpy().astype(dtype, copy=False)
    odd = [
        a for a in range(3) if orders[a] != orders[(a + 1) % 3] and orders[a] != orders[(a + 2) % 3]
    ]
    if odd and odd[0] != 0:
        # Put the separately treated axis first, where rows are handled one by one.
        perm = (odd[0], *[a for a in range(3) if a != odd[0]])
        moved = logits.permute(0, *[p + 1 for p in perm])
        labels = logits_to_labels(
            moved, [shape[p] for p in perm], [orders[p] for p in perm], scheme, dtype
        )
        return np.ascontiguousarray(labels.transpose(np.argsort(perm)))
    if orders[1] != orders[2] or max(orders) > 1:
        # Uncommon plans (cubic logits, mixed in-plane orders): per channel on the CPU.
        data = logits.float().cpu().numpy()
        resized = np.stack([resample_array(c, shape, orders) for c in data])
        return _labels_from(torch.from_numpy(resized), scheme, dtype).numpy().astype(dtype)
    lo, hi, w = _row_weights(logits.shape[1], shape[0], orders[0])
    device = logits.device
    lo_t, hi_t = torch.from_numpy(lo).to(device), torch.from_numpy(hi).to(device)
    w_t = torch.from_numpy(w).to(device)
    heads = logits.shape[0]
    step = max(1, SLAB_BYTES // (4 * heads * shape[1] * shape[2]))
    out = np.empty(shape, dtype=dtype)
    for start in range(0, shape[0], step):
        stop = min(start + step, shape[0])
        weight = w_t[start:stop].view(1, -1, 1, 1)
        rows = logits.index_select(1, lo_t[start:stop]).float()
        if orders[0] == 1:
            rows = rows * (1 - weight) + logits.index_select(1, hi_t[start:stop]).float() * weight
        rows = _plane(rows.transpose(0, 1), shape[1:], orders[1]).transpose(0, 1)
        out[start:stop] = _labels_from(rows, scheme, dtype).cpu().numpy()
    return out
