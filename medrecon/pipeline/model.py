"""Build a pipeline's network and load its weights (``weights_only=True``, always)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from medrecon.errors import PipelineError
from medrecon.pipeline.config import NetworkSpec, WeightsSpec
from medrecon.pipeline.weights import verify_weights

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["build_network", "load_model", "read_state_dict"]

logger = logging.getLogger(__name__)

#: Keys under which training scripts commonly nest the state dict.
_WRAPPER_KEYS = ("state_dict", "model", "network", "model_state_dict")


def build_network(spec: NetworkSpec) -> torch.nn.Module:
    """A fresh (untrained) network from its spec."""
    if spec.factory is not None:
        return spec.factory()
    from monai.networks import nets

    args = dict(spec.args)
    args.setdefault("spatial_dims", 3)
    try:
        return getattr(nets, spec.name)(**args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise PipelineError(f"cannot build network {spec.name} with {args}: {exc}") from exc


def read_state_dict(weights: WeightsSpec) -> dict[str, Any]:
    """The state dict in a weights file; a file that holds anything but tensors is refused."""
    import torch

    verify_weights(weights)
    try:
        obj = torch.load(weights.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file fails inside the unpickler in many ways
        raise PipelineError(
            f"cannot read weights {weights.path}: {exc}. medrecon loads weights with "
            "weights_only=True, so the file must hold a plain state dict of tensors."
        ) from exc
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PipelineError(f"weights file {weights.path} does not hold a state dict of tensors")
    # Weights saved from DataParallel/DDP carry a "module." prefix on every key.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def load_model(spec: NetworkSpec, weights: WeightsSpec | None) -> torch.nn.Module:
    """The network with its weights loaded, in eval mode, on the CPU."""
    net = build_network(spec)
    if weights is None:
        raise PipelineError(f"network {spec.name} has no weights file; a pipeline needs one")
    state = read_state_dict(weights)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PipelineError(
            f"weights {weights.path} do not fit network {spec.name} {spec.args}: {exc}"
        ) from exc
    return net.eval()
