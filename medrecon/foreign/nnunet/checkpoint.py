"""Load nnU-Net checkpoints without running code from them.

A ``.pth`` file is a pickle; unpickling an arbitrary one can run arbitrary code.
torch's ``weights_only`` loader only rebuilds tensors, containers and plain
values, plus what is allow-listed here: the numpy scalars and dtypes that
nnU-Net's trainer stores in its training log (found by inspecting checkpoints
nnU-Net v2 writes). Anything else makes loading fail.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

from medrecon.errors import PipelineError

__all__ = ["Checkpoint", "load_checkpoint", "safe_globals"]

logger = logging.getLogger(__name__)


def safe_globals() -> list:
    """The non-torch objects a real nnU-Net checkpoint needs to unpickle."""
    import numpy as np

    try:  # numpy >= 2 moved the scalar reconstructor
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    allowed = [scalar, np.dtype]
    # Pickled dtypes refer to their concrete class (numpy >= 1.25).
    allowed += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i4", "i8", "u1", "b1")]
    return allowed


@dataclass(frozen=True)
class Checkpoint:
    """What prediction needs from one fold's checkpoint."""

    path: Path
    weights: dict
    trainer_name: str
    configuration: str | None
    #: Spatial axes (of the preprocessed array) mirroring TTA may flip.
    mirror_axes: tuple[int, ...] | None


def load_checkpoint(path: Path) -> Checkpoint:
    """Read ``path`` with torch's weights-only unpickler and nnU-Net's allow-list."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"checkpoint {path} not found; train that fold or choose other folds")
    try:
        with torch.serialization.safe_globals(safe_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PipelineError(
            f"{path} holds objects medrecon will not unpickle (only tensors, plain values "
            f"and nnU-Net's numpy log entries are allowed): {str(exc).splitlines()[0]}. "
            "Use a checkpoint written by nnU-Net's own trainer."
        ) from None
    except (RuntimeError, OSError, EOFError) as exc:
        raise PipelineError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("network_weights"), dict):
        raise PipelineError(f"{path} is not an nnU-Net checkpoint (no 'network_weights' entry)")
    axes = raw.get("inference_allowed_mirroring_axes")
    init_args = raw.get("init_args") if isinstance(raw.get("init_args"), dict) else {}
    logger.debug("loaded checkpoint %s (trainer %s)", path, raw.get("trainer_name"))
    return Checkpoint(
        path=path,
        weights=raw["network_weights"],
        trainer_name=str(raw.get("trainer_name", "")),
        configuration=init_args.get("configuration"),
        mirror_axes=None if axes is None else tuple(int(a) for a in axes),
    )
