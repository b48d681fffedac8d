"""``SegmenterCache``: one engine per model, for a worker that meets many studies.

A cohort worker (or any caller segmenting many volumes) asks the cache for the
engine of each study's model; the model is read once, its network loaded once,
and pipelines sharing one network and weights file share the loaded network.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medrecon.models.engines import Engine, build_engine
from medrecon.models.ref import ModelRef
from medrecon.models.resolve import ModelChoice, as_pipeline, resolve_model
from medrecon.pipeline.config import NetworkSpec, Pipeline, WeightsSpec
from medrecon.pipeline.model import load_model

__all__ = ["SegmenterCache"]

logger = logging.getLogger(__name__)


class SegmenterCache:
    """One :class:`Segmenter` per pipeline, each built on first use and then reused.

    A cohort worker holds one, so every pipeline's network is loaded once however
    many studies need it. Pipelines with the same network and weights file (the
    shipped abdomen-ct and abdomen-mr) share one loaded network: the Segmenters
    differ only in preprocessing, and a worker runs one study at a time.
    """

    def __init__(self, *, device: str = "auto", amp: bool | None = None) -> None:
        self.device = device
        self.amp = amp
        self._segmenters: list[Engine] = []
        self._by_ref: dict[Any, Engine] = {}
        self._choices: dict[ModelRef, ModelChoice] = {}
        self._nets: dict[tuple, Any] = {}

    def __len__(self) -> int:
        return len(self._segmenters)

    @property
    def segmenters(self) -> list[Engine]:
        """The Segmenters built so far, in the order they were first asked for."""
        return list(self._segmenters)

    @property
    def n_networks(self) -> int:
        """How many distinct networks were loaded (shared ones count once)."""
        return len(self._nets)

    def resolve(self, ref: ModelRef) -> ModelChoice:
        """What ``ref`` names, read once: the studies after the first reuse it instead of
        re-reading the model's folder. Weights are checked when the engine loads them."""
        if ref not in self._choices:
            self._choices[ref] = resolve_model(ref, check_weights=False)
        return self._choices[ref]

    def get(self, pipeline: Pipeline | str | Path | ModelRef) -> Engine:
        """The engine for ``pipeline``: a Pipeline, a shipped name, a YAML path or a
        :class:`~medrecon.models.ref.ModelRef` (any kind of model)."""
        # A name, path or ModelRef is remembered as given: no re-parsing and re-hashing per study.
        ref = None if isinstance(pipeline, Pipeline) else _cache_key(pipeline)
        if ref is not None and ref in self._by_ref:
            return self._by_ref[ref]
        if isinstance(pipeline, ModelRef):
            pipe = self.resolve(pipeline).pipeline
        else:
            pipe = as_pipeline(pipeline)
        found = next((s for s in self._segmenters if s.pipeline == pipe), None)
        if found is None:
            extra = {"model_loader": self._load} if pipe.engine == "native" else {}
            found = build_engine(pipe, device=self.device, amp=self.amp, **extra)
            self._segmenters.append(found)
            logger.info("pipeline %s ready (%d loaded)", pipe.name, len(self._segmenters))
        if ref is not None:
            self._by_ref[ref] = found
        return found

    def _load(self, spec: NetworkSpec, weights: WeightsSpec | None):
        if spec.factory is not None or weights is None:
            return load_model(spec, weights)  # code-built networks are not comparable
        key = (spec.name, repr(sorted(spec.args.items())), str(weights.path), weights.sha256)
        if key not in self._nets:
            self._nets[key] = load_model(spec, weights)
        return self._nets[key]


def _cache_key(pipeline: str | Path | ModelRef) -> Any:
    return pipeline if isinstance(pipeline, ModelRef) else str(pipeline)
