"""``--model NAME|PATH``: a :class:`ModelRef` is the model as the user named it.

It is picklable, so it travels to cohort workers and Ray actors;
:func:`medrecon.models.resolve.resolve_model` reads it into a
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

__all__ = ["TOTALSEG_PREFIX", "ModelRef", "as_model_ref", "parse_folds"]

TOTALSEG_PREFIX = "totalsegmentator:"


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
