"""``segment(volume, model) -> Segmentation``: one volume, any kind of model.

The front door of :func:`medrecon.segment`: the model is resolved (``auto`` by
the volume's modality), its engine built and run once. For many volumes use a
:class:`~medrecon.models.cache.SegmenterCache`, which loads each model once.
"""

from __future__ import annotations

from pathlib import Path

from medrecon.models.engines import build_engine
from medrecon.models.ref import ModelRef, as_model_ref
from medrecon.models.resolve import as_pipeline
from medrecon.pipeline.auto import choose_pipeline
from medrecon.pipeline.config import Pipeline
from medrecon.pipeline.segmentation import Segmentation
from medrecon.volume import Volume

__all__ = ["segment"]


def segment(
    volume: Volume,
    model: Pipeline | str | Path | ModelRef = "auto",
    *,
    device: str = "auto",
    amp: bool | None = None,
    probabilities: bool = False,
) -> Segmentation:
    """Segment ``volume`` with ``model``; labels come back on the volume's native grid.

    ``model``: ``"auto"`` (the shipped pipeline made for the volume's modality,
    :func:`medrecon.pipeline.auto.choose_pipeline`; a warning joins the result's
    when that modality had to be inferred), a shipped pipeline's name, a YAML
    path, a MONAI bundle or nnU-Net v2 results folder, ``totalsegmentator:TASK``,
    a :class:`~medrecon.models.ref.ModelRef` (with its options) or a
    Pipeline. For many volumes, build the engine once
    (:class:`SegmenterCache`) and call it, so the network is loaded once.
    """
    notes: list[str] = []
    ref = as_model_ref(model)
    if not isinstance(ref, Pipeline) and ref.is_auto:
        choice = choose_pipeline(volume)
        ref, notes = ref.with_ref(choice.path), list(choice.warnings)
    engine = build_engine(as_pipeline(ref), device=device, amp=amp)
    seg = engine(volume, probabilities=probabilities)
    seg.warnings[:0] = notes
    return seg
