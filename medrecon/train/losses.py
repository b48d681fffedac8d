"""Dice + cross-entropy that leaves out ignored voxels (held-out validation slabs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medrecon.train.prepare import IGNORE

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["masked_dice_ce"]


def masked_dice_ce(
    logits: torch.Tensor, label: torch.Tensor, *, smooth: float = 1e-5
) -> torch.Tensor:
    """Soft Dice (pooled over the batch, background included, like MONAI's
    ``DiceCELoss(batch=True)``) plus cross-entropy, both over voxels whose label is
    not :data:`IGNORE`. ``logits`` (B, C, X, Y, Z); ``label`` (B, 1, X, Y, Z) integer."""
    import torch
    import torch.nn.functional as F

    label = label[:, 0].long()
    valid = label != IGNORE
    if not valid.any():
        return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
    target = torch.where(valid, label, 0)
    ce = F.cross_entropy(logits.float(), label, ignore_index=IGNORE)
    probs = torch.softmax(logits.float(), dim=1)
    weight = valid.unsqueeze(1).to(probs.dtype)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).to(probs.dtype) * weight
    probs = probs * weight
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = 1.0 - (2.0 * inter + smooth) / (denom + smooth)
    return dice.mean() + ce
