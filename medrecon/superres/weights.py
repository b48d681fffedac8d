"""The super-resolution network's weights: the shipped pretrained file, a user's file, or none.

A weights file is a ``torch.save`` of ``{"arch": {...}, "state": state_dict,
"trained": {...}}``: the architecture's keywords for :func:`network.build_network`,
the tensors, and how it was trained (kept for the sidecar and the model card).
It is read with ``weights_only=True``.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from medrecon.superres.network import build_network
from medrecon.superres.profile import ReconstructError

__all__ = [
    "DEFAULT_SHA256",
    "DEFAULT_WEIGHTS",
    "default_weights_path",
    "load_network",
    "save_network",
]

log = logging.getLogger(__name__)

#: File name of the shipped pretrained network inside medrecon's pipelines folder.
DEFAULT_WEIGHTS = "superres-2d.pt"
#: Its SHA-256: a changed file is refused, as the segmentation weights are.
DEFAULT_SHA256 = "474919bcfc6b8db33e70760a290c522c7984d154939238f40d7b569fb48b9205"


def default_weights_path() -> Path:
    """Where the shipped pretrained weights are installed."""
    return Path(str(resources.files("medrecon._pipelines").joinpath(DEFAULT_WEIGHTS)))


def save_network(net, path: str | Path, arch: dict, trained: dict | None = None) -> Path:
    """Write ``net``'s weights with its architecture, atomically."""
    import torch

    from medrecon.atomic import atomic_write_path

    path = Path(path)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_write_path(path) as tmp:
        torch.save({"arch": dict(arch), "state": state, "trained": dict(trained or {})}, tmp)
    return path


def load_network(weights: str | Path | None = "default", *, device: str = "cpu"):
    """The network and a short description of where its weights came from.

    ``"default"``: the shipped file; a path: that file; None: a fresh network
    (whose last layer starts at zero, so it returns its B-spline input).
    """
    import torch

    if weights is None:
        return build_network().to(device).eval(), "untrained"
    path = default_weights_path() if weights == "default" else Path(weights)
    if not path.is_file():
        raise ReconstructError(
            f"super-resolution weights {path} not found; pass an existing --weights file "
            "or --no-pretrained"
        )
    if weights == "default":
        from medrecon.pipeline.weights import sha256_file

        digest = sha256_file(path)
        if digest != DEFAULT_SHA256:
            raise ReconstructError(
                f"{path} has SHA-256 {digest[:12]}..., not the shipped {DEFAULT_SHA256[:12]}...: "
                "the file was changed or damaged; reinstall medrecon or pass --weights FILE"
            )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        net = build_network(**saved["arch"])
        net.load_state_dict(saved["state"])
    except Exception as exc:  # torch raises many kinds for a file that is not its own
        raise ReconstructError(
            f"{path} is not a medrecon super-resolution weights file ({exc})"
        ) from exc
    source = "pretrained" if weights == "default" else str(path)
    log.debug("loaded super-resolution weights %s (%s)", path, saved.get("arch"))
    return net.to(device).eval(), source
