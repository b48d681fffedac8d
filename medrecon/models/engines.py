"""Which engine runs a pipeline: medrecon's own steps or a foreign model's runner.

Every engine is built as ``Engine(pipeline, device=..., amp=...)`` and called as
``engine(volume, probabilities=False) -> Segmentation`` with the labels on the
volume's native grid; ``engine.pipeline`` is the pipeline it runs. Foreign
engines are imported only when a pipeline needs them, so ``medrecon run`` with
the shipped model never imports nnU-Net's network package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

from medrecon.errors import PipelineError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from medrecon.pipeline.config import Pipeline
    from medrecon.pipeline.segmentation import Segmentation
    from medrecon.volume import Volume

__all__ = ["ENGINES", "Engine", "build_engine"]

#: engine name -> "module:class"
ENGINES = {
    "native": "medrecon.pipeline.segment:Segmenter",
    "nnunet": "medrecon.foreign.nnunet.engine:NnunetSegmenter",
    "bundle": "medrecon.foreign.bundle.engine:BundleSegmenter",
    "totalsegmentator": "medrecon.foreign.totalseg.engine:TotalSegSegmenter",
}


class Engine(Protocol):
    """What run, batch and segment need from whoever runs a pipeline."""

    pipeline: Pipeline

    def __call__(self, volume: Volume, *, probabilities: bool = False) -> Segmentation: ...


def engine_class(name: str) -> type:
    """The class that runs pipelines of engine ``name``."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise PipelineError(
            f"unknown engine {name!r}; known: {', '.join(sorted(ENGINES))}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)


def build_engine(pipeline: Pipeline, *, device: str = "auto", amp=None, **kwargs: Any) -> Engine:
    """The engine for ``pipeline``, its model loaded on ``device``.

    ``kwargs`` go to the native Segmenter only (its ``model_loader``).
    """
    if pipeline.engine == "native":
        return engine_class("native")(pipeline, device=device, amp=amp, **kwargs)
    return engine_class(pipeline.engine)(pipeline, device=device, amp=amp)
