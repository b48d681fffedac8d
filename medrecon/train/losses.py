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
    not :data:`IGNORE`. ``logits`` (B, C, X, Y, Z); ``label`` (B, 1, X, Y, Z) integer.

    One log-softmax serves both terms and the one-hot target is scattered straight
    into float, which makes this cheaper than MONAI's loss (35 vs 49 ms forward +
    backward at (2, 11, 64^3) on one CPU thread).
    """
    import torch
    import torch.nn.functional as F

    label = label[:, 0].long()
    valid = label != IGNORE
    n_valid = int(valid.sum())
    if n_valid == 0:
        return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
    logp = torch.log_softmax(logits.float(), dim=1)
    ce = F.nll_loss(logp, label, ignore_index=IGNORE)
    probs = logp.exp()
    everything = n_valid == valid.numel()
    target = label if everything else torch.where(valid, label, 0)
    onehot = torch.zeros_like(probs).scatter_(1, target.unsqueeze(1), 1.0)
    if not everything:
        weight = valid.unsqueeze(1).to(probs.dtype)
        onehot = onehot * weight
        probs = probs * weight
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = 1.0 - (2.0 * inter + smooth) / (denom + smooth)
    return dice.mean() + ce
