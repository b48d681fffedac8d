"""Training checkpoints: tensors and plain Python values only, so they load with
``torch.load(weights_only=True)`` like every other file medrecon reads."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medrecon.atomic import atomic_write_path
from medrecon.errors import InputError

__all__ = ["LAST", "BEST", "load_checkpoint", "plain_state_dict", "save_checkpoint"]

logger = logging.getLogger(__name__)

LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"


def plain_state_dict(net: Any) -> dict[str, Any]:
    """The network's weights on the CPU, without a DDP ``module.`` wrapper."""
    module = getattr(net, "module", net)
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (a crash never leaves half a checkpoint)."""
    import torch

    with atomic_write_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    if not path.is_file():
        raise InputError(f"cannot resume: {path} does not exist (train without --resume first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise InputError(f"cannot resume from {path}: {exc}") from exc
