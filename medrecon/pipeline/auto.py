"""``--pipeline auto``: the shipped pipeline made for the study's modality.

A DICOM series names its modality (CT, MR, ...) in its header; a NIfTI, NRRD or
MHA file does not, so :func:`guess_modality` infers it from the voxel values: a
CT is in Hounsfield units, where air (-1000) and fat (-100) are negative, while
an MR magnitude image is non-negative apart from small interpolation ripples.
The pipeline is then looked up by modality in the registry
(:func:`~medrecon.pipeline.registry.pipelines_for_modality`), so a pipeline
shipped later for another modality is found without code changes here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medrecon.errors import InputError, PipelineError
from medrecon.volume import Volume

__all__ = [
    "AIR_HU",
    "AIR_SHARE",
    "AUTO",
    "FAT_HU",
    "FAT_SHARE",
    "UNTAGGED",
    "ModalityGuess",
    "PipelineChoice",
    "choose_pipeline",
    "guess_modality",
    "is_auto",
]

logger = logging.getLogger(__name__)

#: The pipeline argument that asks for the choice by modality (the default everywhere).
AUTO = "auto"

#: Modality values that name no modality: none at all (NIfTI, NRRD, MHA) and DICOM's
#: "OT" (other), which medrecon also reads for a DICOM file without a Modality tag.
UNTAGGED = ("", "OT")

#: Below this a CT voxel is air or lung (air is -1000 HU); no MR magnitude goes this low.
AIR_HU = -500.0
#: A CT with its surroundings holds far more air than this (36% in the shared abdomen CT).
AIR_SHARE = 0.01
#: Below this a CT voxel is fat (about -100 HU), while MR ripples stay a few units below 0.
FAT_HU = -50.0
#: A CT cropped to the inside of the body has next to no air but still this much fat.
FAT_SHARE = 0.05


@dataclass(frozen=True)
class ModalityGuess:
    """``CT`` or ``MR`` and the shares of voxels it rests on, for messages."""

    modality: str
    reason: str


@dataclass(frozen=True)
class PipelineChoice:
    """The shipped pipeline ``auto`` chose, and why (both go into run.json)."""

    name: str
    path: Path
    modality: str
    reason: str
    #: Set when the modality was inferred: the user should know, and how to override.
    warnings: tuple[str, ...] = ()


def is_auto(pipeline: Any) -> bool:
    """True for the ``auto`` pipeline argument, as a string or a
    :class:`~medrecon.models.ref.ModelRef` (a Pipeline, path or other name is not)."""
    if isinstance(pipeline, str):
        return pipeline == AUTO
    return getattr(pipeline, "is_auto", False) is True


def guess_modality(array: np.ndarray) -> ModalityGuess:
    """``CT`` or ``MR`` from voxel values alone, for inputs without a modality tag.

    CT when at least :data:`AIR_SHARE` of the voxels lie below :data:`AIR_HU`
    (air in Hounsfield units) or at least :data:`FAT_SHARE` below :data:`FAT_HU`
    (fat, for a CT cropped to the body); MR otherwise. NaN voxels are not counted.
    A CT that is not in HU (rescaled to [0, 1], z-scored, unsigned without its
    rescale) reads as MR: give the pipeline explicitly for those.
    """
    values = np.asarray(array)
    n = values.size
    if values.dtype.kind == "f":
        n -= int(np.count_nonzero(np.isnan(values)))
    if n == 0:
        raise InputError("cannot infer the modality of an image without voxel values")
    air = np.count_nonzero(values < AIR_HU) / n
    fat = np.count_nonzero(values < FAT_HU) / n
    shares = f"{air:.1%} of voxels below {AIR_HU:g}, {fat:.1%} below {FAT_HU:g}"
    if air >= AIR_SHARE:
        return ModalityGuess("CT", f"{shares}: air in Hounsfield units")
    if fat >= FAT_SHARE:
        return ModalityGuess("CT", f"{shares}: fat in Hounsfield units")
    return ModalityGuess("MR", f"{shares}: next to no negative values, like MR")


def choose_pipeline(volume: Volume, *, where: str = "input") -> PipelineChoice:
    """The shipped pipeline for ``volume``'s modality (inferred from the intensities
    when it has none, see :data:`UNTAGGED`).

    Raises :class:`InputError` naming the modality, ``where`` (the study) and the
    fix when no shipped pipeline is made for it, and :class:`PipelineError` when
    several are (auto cannot tell which one is meant).
    """
    from medrecon.pipeline.registry import pipelines_for_modality, shipped_modalities

    tagged = (volume.meta.modality or "").strip().upper()
    guess = None
    if tagged not in UNTAGGED:
        modality, how = tagged, f"modality {tagged} from the input's header"
    else:
        guess = guess_modality(volume.array)
        modality = guess.modality
        how = f"no modality tag; intensities look like {modality} ({guess.reason})"
    found = pipelines_for_modality(modality)
    if not found:
        covered = ", ".join(shipped_modalities()) or "none"
        raise InputError(
            f"{where}: no shipped pipeline segments {modality} images (the shipped pipelines "
            f"are made for {covered}). Pass --model NAME_OR_PATH (model= in Python) "
            f"with a pipeline made for {modality} images."
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise PipelineError(
            f"{where}: several shipped pipelines are made for {modality} images ({names}); "
            "choose one with --model NAME"
        )
    pipe = found[0]
    assert pipe.source is not None  # shipped pipelines are read from their files
    warnings: tuple[str, ...] = ()
    if guess is not None:
        warnings = (
            f"the input has no modality tag: modality {modality} was inferred from its "
            f"intensities ({guess.reason}), so pipeline {pipe.name} was chosen; pass "
            "--model NAME_OR_PATH to choose another",
        )
        logger.warning("%s: %s", where, warnings[0])
    return PipelineChoice(pipe.name, pipe.source, modality, f"auto: {how} -> {pipe.name}", warnings)
