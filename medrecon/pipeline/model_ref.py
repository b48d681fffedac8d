"""``--model NAME|PATH``: one option for every kind of model, and what it resolves to.

A :class:`ModelRef` is what the user asked for (picklable, so it travels to
cohort workers and Ray actors); :func:`resolve_model` reads it into a
:class:`~medrecon.pipeline.config.Pipeline` and says which kind it found:

* ``auto``: the shipped pipeline for the study's modality (resolved per study);
* a shipped pipeline's name, or a pipeline YAML file;
* a MONAI bundle folder (``configs/`` + ``models/``), or its inference config;
* an nnU-Net v2 results folder (``DatasetNNN_Name`` or ``Trainer__Plans__config``);
* ``totalsegmentator:TASK``: TotalSegmentator's nnU-Net folders in its home folder.

Options that fit only some kinds (``folds``, ``configuration``, ``trust``,
``labels``) are refused for the others, so a typo never goes unnoticed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medrecon.errors import InputError
from medrecon.pipeline.auto import AUTO
from medrecon.pipeline.config import Pipeline

__all__ = [
    "KINDS",
    "ModelChoice",
    "ModelRef",
    "as_model_ref",
    "detect_kind",
    "parse_folds",
    "resolve_model",
]

TOTALSEG_PREFIX = "totalsegmentator:"

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
class ModelRef:
    """A model as the user named it, with the options that go with it."""

    ref: str = AUTO
    folds: tuple[int | str, ...] | None = None
    configuration: str | None = None
    #: False turns off test-time augmentation (flips / nnU-Net mirroring).
    tta: bool = True
    #: Allow a MONAI bundle's config to run code.
    trust: bool = False
    #: A file naming a bundle's output channels (when its metadata does not).
    labels: str | None = None

    @property
    def is_auto(self) -> bool:
        return self.ref == AUTO

    def with_ref(self, ref: str | os.PathLike[str]) -> ModelRef:
        return replace(self, ref=os.fspath(ref))

    def absolute(self) -> ModelRef:
        """Paths made absolute, for workers that may start in another folder."""
        ref = self.ref
        if not self.is_auto and not ref.startswith(TOTALSEG_PREFIX) and Path(ref).exists():
            ref = str(Path(ref).resolve())
        labels = str(Path(self.labels).resolve()) if self.labels else None
        return replace(self, ref=ref, labels=labels)


@dataclass(frozen=True)
class ModelChoice:
    """The pipeline a ModelRef resolved to, its kind and a line saying what was found."""

    pipeline: Pipeline
    kind: str
    found: str


def parse_folds(text: str | None) -> tuple[int | str, ...] | None:
    """``"0,1,4"`` -> ``(0, 1, 4)``; ``"all"`` -> ``("all",)``; None stays None."""
    if text is None or not str(text).strip():
        return None
    folds: list[int | str] = []
    for part in str(text).split(","):
        part = part.strip()
        if part == "all":
            folds.append("all")
        elif part.isdigit():
            folds.append(int(part))
        else:
            raise InputError(
                f"--folds {text!r}: give fold numbers separated by commas (e.g. 0,1,2) or 'all'"
            )
    return tuple(folds)


def as_model_ref(model: Any = None, *, pipeline: Any = None, **options: Any) -> Any:
    """The model argument of run_study/run_cohort/segment as a ModelRef.

    ``model`` and the older ``pipeline`` name the same thing; giving both (other
    than ``auto``) is an error. A Pipeline object passes through unchanged when
    no option is given (it is already resolved).
    """
    given = [m for m in (model, pipeline) if m is not None and not _is_auto_value(m)]
    if len(given) > 1:
        raise InputError("give the model once: model= (--model) or pipeline= (--pipeline)")
    chosen = given[0] if given else AUTO
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(chosen, ModelRef):
        return replace(chosen, **options) if options else chosen
    if isinstance(chosen, Pipeline):
        if options:
            raise InputError(
                f"options {', '.join(sorted(options))} cannot apply to an already loaded "
                f"pipeline object {chosen.name!r}; give its name or path instead"
            )
        return chosen
    return ModelRef(ref=os.fspath(chosen), **options)


def _is_auto_value(value: Any) -> bool:
    return (isinstance(value, str) and value == AUTO) or (
        isinstance(value, ModelRef) and value.is_auto and value == ModelRef()
    )


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
