"""The learning-rate schedule of ``medrecon train``: linear warm-up, then cosine decay
to ``min_lr`` over the run's ``epochs x iterations_per_epoch`` steps.

The schedule is a function of the step and of the run's settings; a checkpoint holds
the step, not the function. A resumed run with other settings (say ``--epochs``)
therefore continues on a different curve: :func:`schedule_changes` names the
differences so that the loop can say so.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

__all__ = ["SCHEDULE_KEYS", "lr_factor", "schedule_changes"]

#: TrainConfig fields that shape the learning-rate curve.
SCHEDULE_KEYS = ("epochs", "iterations_per_epoch", "lr", "warmup_epochs", "min_lr")


def lr_factor(config: Any):
    """``step -> factor`` of ``config.lr`` (a LambdaLR lambda)."""
    warm = max(1, int(config.warmup_epochs * config.iterations_per_epoch))
    total = max(config.epochs * config.iterations_per_epoch, warm + 1)
    floor = config.min_lr / config.lr

    def factor(step: int) -> float:
        if step < warm:
            return 0.01 + 0.99 * step / warm
        t = (step - warm) / (total - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def schedule_changes(saved: dict[str, Any], config: Any, step: int) -> list[str]:
    """How ``config`` changes the schedule a checkpoint at ``step`` was trained with:
    one ``"name a -> b"`` per differing setting, plus the rate it jumps between;
    empty when the curve is the same (or the checkpoint predates stored settings)."""
    changed = [
        f"{key} {saved[key]} -> {getattr(config, key)}"
        for key in SCHEDULE_KEYS
        if key in saved and saved[key] != getattr(config, key)
    ]
    if not changed:
        return []
    try:
        stored = SimpleNamespace(**{key: saved[key] for key in SCHEDULE_KEYS})
        before = float(saved["lr"]) * lr_factor(stored)(step)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return changed
    after = config.lr * lr_factor(config)(step)
    return [*changed, f"learning rate at step {step}: {before:.3g} -> {after:.3g}"]
