"""What a :class:`~medrecon.models.ref.ModelRef` names, read into a Pipeline.

:func:`detect_kind` tells the kinds apart (a foreign model's own package says
whether a folder is one of its own); :func:`resolve_model` reads the model and
returns a :class:`ModelChoice` with a line saying what was found. Options that fit
only some kinds are refused for the others, so a typo never goes unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from medrecon.errors import InputError
from medrecon.models.ref import TOTALSEG_PREFIX, ModelRef
from medrecon.pipeline.auto import AUTO
from medrecon.pipeline.config import Pipeline

__all__ = ["KINDS", "ModelChoice", "as_pipeline", "detect_kind", "resolve_model"]

#: kind -> how it is named to the user
KINDS = {
    "auto": "auto (the shipped pipeline for the study's modality)",
    "pipeline": "medrecon pipeline",
    "bundle": "MONAI bundle",
    "nnunet": "nnU-Net v2 results folder",
    "totalsegmentator": "TotalSegmentator task",
}

# Which kinds each option applies to.
_OPTION_KINDS = {
    "folds": ("nnunet", "totalsegmentator"),
    "configuration": ("nnunet",),
    "trust": ("bundle",),
    "labels": ("bundle",),
}
_OPTION_FLAGS = {
    "folds": "--folds",
    "configuration": "--configuration",
    "trust": "--trust-bundle",
    "labels": "--labels",
    "tta": "--no-tta",
}


@dataclass(frozen=True)
class ModelChoice:
    """The pipeline a ModelRef resolved to, its kind and a line saying what was found."""

    pipeline: Pipeline
    kind: str
    found: str


def detect_kind(ref: str) -> str:
    """The kind of model ``ref`` names (see :data:`KINDS`); raises InputError when a
    folder is none of them."""
    if ref == AUTO:
        return "auto"
    if ref.startswith(TOTALSEG_PREFIX):
        return "totalsegmentator"
    path = Path(ref).expanduser()
    if path.exists():
        from medrecon.foreign.bundle import is_bundle_folder

        if is_bundle_folder(path):  # the folder, or its configs/inference.* file
            return "bundle"
    if path.is_dir():
        from medrecon.foreign.nnunet import is_nnunet_folder

        if is_nnunet_folder(path):
            return "nnunet"
        raise InputError(
            f"{path}: this folder is not a model medrecon knows. --model takes a MONAI "
            "bundle folder (configs/ and models/), an nnU-Net v2 results folder "
            "(DatasetNNN_Name/ or Trainer__Plans__configuration/ with dataset.json, "
            "plans.json and fold_N/), a pipeline YAML file, a shipped pipeline's name, "
            "or totalsegmentator:TASK"
        )
    return "pipeline"


def _check_options(ref: ModelRef, kind: str) -> None:
    for option, kinds in _OPTION_KINDS.items():
        value = getattr(ref, option)
        if value in (None, False) or kind in kinds:
            continue
        fits = " or ".join(KINDS[k] for k in kinds)
        raise InputError(
            f"{_OPTION_FLAGS[option]} applies to a {fits}; {ref.ref!r} is a {KINDS[kind]}"
        )
    if not ref.tta and kind == "bundle":
        raise InputError(
            f"--no-tta: {ref.ref!r} is a MONAI bundle, which runs its own inferer as its "
            "config says; change the config to change its test-time augmentation"
        )


def _without_tta(pipe: Pipeline) -> Pipeline:
    return replace(pipe, inference=replace(pipe.inference, tta_flips=()))


def resolve_model(ref: ModelRef | str, *, check_weights: bool = True) -> ModelChoice:
    """Read the model ``ref`` names. ``auto`` cannot be resolved without a study
    (:func:`medrecon.pipeline.auto.choose_pipeline` does that)."""
    if isinstance(ref, str):
        ref = ModelRef(ref)
    kind = detect_kind(ref.ref)
    _check_options(ref, kind)
    if kind == "auto":
        raise InputError(
            "'auto' chooses a shipped pipeline per study by its modality; here a model is "
            "needed: give its name or path"
        )
    if kind == "pipeline":
        from medrecon.pipeline.registry import load_pipeline

        pipe = load_pipeline(ref.ref, check_weights=check_weights)
        where = pipe.source or ref.ref
        found = f"{KINDS[kind]} {pipe.name} ({where})"
        return ModelChoice(pipe if ref.tta else _without_tta(pipe), kind, found)
    if kind == "bundle":
        from medrecon.foreign.bundle import load_bundle

        pipe = load_bundle(ref.ref, trust=ref.trust, labels=ref.labels)
    elif kind == "nnunet":
        from medrecon.foreign.nnunet import load_nnunet

        pipe = load_nnunet(ref.ref, folds=ref.folds, configuration=ref.configuration, tta=ref.tta)
    else:
        from medrecon.foreign.totalseg import load_totalsegmentator

        task = ref.ref[len(TOTALSEG_PREFIX) :]
        pipe = load_totalsegmentator(task, folds=ref.folds, tta=None if ref.tta else False)
    found = f"{KINDS[kind]} {pipe.name} ({ref.ref}): {len(pipe.labels)} labels, {pipe.modality}"
    if pipe.description:  # e.g. the folds and mirroring an nnU-Net model runs with
        found += f"; {pipe.description}"
    return ModelChoice(pipe, kind, found)


def as_pipeline(model: Pipeline | str | Path | ModelRef) -> Pipeline:
    """``model`` read into a Pipeline: a Pipeline as it is, a ModelRef resolved, a
    shipped name or YAML path loaded."""
    from medrecon.pipeline.registry import load_pipeline

    if isinstance(model, Pipeline):
        return model
    if isinstance(model, ModelRef):
        return resolve_model(model).pipeline
    return load_pipeline(model)
