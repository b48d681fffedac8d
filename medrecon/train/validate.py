"""Validation Dice per label: the pipeline's own sliding-window inference on each
validation case's model-grid image, compared with the reference on the held-out
voxels only (whole validation cases, or the held-out slabs)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from medrecon.pipeline.config import Pipeline
from medrecon.train.prepare import PreparedCase

__all__ = ["dice_per_label", "validate"]

logger = logging.getLogger(__name__)


def dice_per_label(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, values
) -> dict[int, tuple[float, int, int]]:
    """``value -> (Dice, reference voxels, predicted voxels)`` within ``mask``; Dice is
    NaN where neither has the label."""
    p, r = pred[mask], ref[mask]
    out = {}
    for v in values:
        pv, rv = p == v, r == v
        n_p, n_r = int(pv.sum()), int(rv.sum())
        inter = int((pv & rv).sum())
        out[v] = ((2.0 * inter / (n_p + n_r)) if n_p + n_r else math.nan, n_r, n_p)
    return out


def validate(
    net: Any, cases: list[PreparedCase], pipeline: Pipeline, device: str
) -> dict[str, float]:
    """``label name -> Dice`` pooled over the validation voxels of every case, plus
    ``mean`` over the labels found in the reference or the prediction there (a
    label predicted but absent from the reference counts as 0)."""
    import torch

    from medrecon.pipeline.device import DeviceChoice
    from medrecon.pipeline.infer import predict_probabilities

    module = getattr(net, "module", net)
    was_training = module.training
    module.eval()
    values = [lab.value for lab in pipeline.labels]
    inter = dict.fromkeys(values, 0.0)
    total = dict.fromkeys(values, 0.0)
    for case in cases:
        if case.val_mask is None:
            continue
        image = torch.from_numpy(case.image)[None]
        probs, _ = predict_probabilities(
            module, image, pipeline.inference, DeviceChoice(device=device, amp_dtype=None)
        )
        pred = probs.argmax(0).cpu().numpy().astype(np.uint8)
        for v, (d, n_r, n_p) in dice_per_label(pred, case.reference, case.val_mask, values).items():
            if not math.isnan(d):
                inter[v] += d * (n_r + n_p) / 2.0
                total[v] += n_r + n_p
    module.train(was_training)
    scores = {
        lab.name: (2.0 * inter[lab.value] / total[lab.value]) if total[lab.value] else math.nan
        for lab in pipeline.labels
    }
    present = [s for s in scores.values() if not math.isnan(s)]
    scores["mean"] = float(np.mean(present)) if present else math.nan
    return scores
