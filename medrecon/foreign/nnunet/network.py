"""Build the network the plans describe, with ``dynamic_network_architectures``.

The plans name classes by dotted path. Importing whatever a file names would
let a plans file run any code, so only network classes from
``dynamic_network_architectures`` and building blocks from ``torch.nn`` may be
named.
"""

from __future__ import annotations

import importlib
import logging

from medrecon.errors import PipelineError
from medrecon.foreign.nnunet.plans import Architecture

__all__ = ["build_network", "import_allowed"]

logger = logging.getLogger(__name__)

NETWORK_PREFIX = "dynamic_network_architectures."
BLOCK_PREFIXES = ("torch.nn.",)


def import_allowed(dotted: str, prefixes: tuple[str, ...], what: str, source) -> type:
    """The class at ``dotted`` if it lies under one of ``prefixes``."""
    if not isinstance(dotted, str) or not dotted.startswith(prefixes) or dotted.count(".") < 1:
        raise PipelineError(
            f"{source}: {what} {dotted!r} is not allowed; medrecon imports only classes "
            f"under {', '.join(prefixes)} from an nnU-Net plans file"
        )
    module_name, _, attr = dotted.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(
            f"{source}: {what} {dotted!r} cannot be imported ({exc}); install the "
            "dynamic-network-architectures version the model was trained with"
        ) from None
    if not isinstance(target, type):
        raise PipelineError(f"{source}: {what} {dotted!r} is not a class")
    return target


def build_network(arch: Architecture, in_channels: int, num_heads: int, source):
    """The network (untrained, deep supervision off), as nnU-Net's factory builds it."""
    network_class = import_allowed(arch.class_name, (NETWORK_PREFIX,), "network class", source)
    kwargs = dict(arch.kwargs)
    for key in arch.requires_import:
        if kwargs.get(key) is not None:
            kwargs[key] = import_allowed(kwargs[key], BLOCK_PREFIXES, f"{key}", source)
    kwargs["deep_supervision"] = False
    try:
        network = network_class(input_channels=in_channels, num_classes=num_heads, **kwargs)
    except TypeError as exc:
        raise PipelineError(
            f"{source}: {arch.class_name} rejects the plans' arch_kwargs ({exc}); the plans "
            "and the installed dynamic-network-architectures do not match"
        ) from exc
    return network


def load_weights(network, weights: dict, source) -> None:
    """Load ``weights`` strictly: every tensor must match the plans' network."""
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise PipelineError(
            f"{source}: the checkpoint's weights do not fit the network the plans describe "
            f"({' '.join(first)}); plans.json and the checkpoint belong to different models"
        ) from None
