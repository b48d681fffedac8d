"""Find pipelines: the ones shipped with medrecon (``pipelines/*.yaml``) or a user's file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from medrecon.errors import PipelineError
from medrecon.pipeline.config import Pipeline
from medrecon.pipeline.parse import read_pipeline_file
from medrecon.pipeline.weights import verify_weights

__all__ = [
    "PipelineInfo",
    "list_pipelines",
    "load_pipeline",
    "pipelines_for_modality",
    "shipped_modalities",
    "shipped_pipeline_dir",
    "shipped_pipelines",
]

logger = logging.getLogger(__name__)

_SUFFIXES = (".yaml", ".yml")


def shipped_pipeline_dir() -> Path:
    """The folder holding the pipelines installed with medrecon."""
    return Path(str(resources.files("medrecon._pipelines")))


@dataclass(frozen=True)
class PipelineInfo:
    """A shipped pipeline and whether it can run (``status`` is "ready" or the problem)."""

    name: str
    path: Path
    status: str
    pipeline: Pipeline | None


def list_pipelines() -> list[PipelineInfo]:
    """Every shipped pipeline with its status; a broken file is listed, not raised."""
    infos = []
    for path in sorted(shipped_pipeline_dir().iterdir()):
        if path.suffix not in _SUFFIXES:
            continue
        try:
            pipeline = read_pipeline_file(path, check_weights=False)
        except PipelineError as exc:
            infos.append(PipelineInfo(path.stem, path, f"invalid: {exc}", None))
            continue
        status = "ready"
        for weights in (pipeline.weights, pipeline.coarse.weights if pipeline.coarse else None):
            if weights is None:
                continue
            try:
                verify_weights(weights, str(path))
            except PipelineError as exc:
                status = f"not usable: {exc}"
        infos.append(PipelineInfo(pipeline.name, path, status, pipeline))
    return infos


def shipped_pipelines() -> list[Pipeline]:
    """The shipped pipelines that parse, weights unchecked (loading checks them); a
    broken file is left out with a warning, so it cannot hide the others."""
    found = []
    for path in sorted(shipped_pipeline_dir().iterdir()):
        if path.suffix not in _SUFFIXES:
            continue
        try:
            found.append(read_pipeline_file(path, check_weights=False))
        except PipelineError as exc:
            logger.warning("shipped pipeline %s left out: %s", path.name, exc)
    return found


def pipelines_for_modality(modality: str) -> list[Pipeline]:
    """The shipped pipelines made for ``modality`` (``CT``, ``MR``...), by name."""
    wanted = modality.upper()
    return sorted((p for p in shipped_pipelines() if p.modality == wanted), key=lambda p: p.name)


def shipped_modalities() -> list[str]:
    """The modalities some shipped pipeline is made for, sorted."""
    return sorted({p.modality for p in shipped_pipelines()})


def load_pipeline(name_or_path: str | Path | Pipeline, *, check_weights: bool = True) -> Pipeline:
    """A Pipeline from a shipped pipeline's name or a path to a YAML file.

    A Pipeline object is returned as it is, so APIs can take either.
    """
    if isinstance(name_or_path, Pipeline):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in _SUFFIXES or path.exists() or "/" in text or "\\" in text:
        return read_pipeline_file(path, check_weights=check_weights)
    if text == "auto":
        # Not a pipeline: run_study, run_cohort and the CLI resolve it per study.
        raise PipelineError(
            "'auto' chooses a shipped pipeline per study by its modality (medrecon run, "
            "batch and segment; run_study, run_cohort, segment); here a pipeline is "
            "needed: give its name or YAML path"
        )
    for suffix in _SUFFIXES:
        candidate = shipped_pipeline_dir() / f"{text}{suffix}"
        if candidate.is_file():
            return read_pipeline_file(candidate, check_weights=check_weights)
    known = sorted(p.stem for p in shipped_pipeline_dir().iterdir() if p.suffix in _SUFFIXES)
    raise PipelineError(
        f"no pipeline named {text!r}; shipped pipelines: {', '.join(known) or 'none'}. "
        "Give a path to a YAML file to use your own."
    )
