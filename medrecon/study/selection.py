"""Which series of a study a pipeline should segment.

A DICOM folder often holds several series (scouts, thin and thick
reconstructions, contrast phases, other planes). ``medrecon run`` picks the one
that fits the pipeline: the right modality, 3D, enough slices, axial first,
then the most voxels (the finest reconstruction), then thinner slices. The
choice and the runners-up are reported so the user can override it. With
``--pipeline auto`` there is no pipeline yet: any modality some shipped pipeline
is made for will do, and the chosen series' modality then picks the pipeline.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from medrecon.errors import InputError, NoImageError
from medrecon.io.report import SeriesSummary
from medrecon.pipeline.auto import UNTAGGED

__all__ = ["MIN_SLICES", "SeriesChoice", "choose_series", "describe_series"]

#: Fewer slices than this is a localiser or a single-slice series, not a volume to segment.
MIN_SLICES = 8

_PLANE_RANK = {"axial": 0, "oblique": 1, "coronal": 2, "sagittal": 2}


@dataclass(frozen=True)
class SeriesChoice:
    """The chosen volume (index into the summaries) and why."""

    index: int
    reason: str


def describe_series(s: SeriesSummary) -> str:
    """``#3 'Abdomen 1.0' CT axial 512x512x300`` for messages."""
    extra = "".join(f", {k}={v}" for k, v in s.distinguishing.items())
    shape = "x".join(str(n) for n in s.shape)
    return f"#{s.series_number} '{s.description}' {s.modality} {s.orientation} {shape}{extra}"


_NO_PIPELINE = "no shipped pipeline for it"


def _unsuitable(
    s: SeriesSummary, modality: str | None, modalities: Collection[str] | None
) -> str | None:
    if modality and s.modality.upper() != modality.upper():
        return f"modality {s.modality or 'unknown'}, pipeline wants {modality}"
    # A series without a modality (or "OT") stays a candidate: its intensities decide later.
    tag = s.modality.strip().upper()
    wanted = {m.upper() for m in modalities or ()}
    if not modality and modalities is not None and tag not in UNTAGGED and tag not in wanted:
        return f"modality {s.modality}, {_NO_PIPELINE}"
    if s.frame_axis == "rgb":
        return "colour (RGB) image, pipeline wants a greyscale 3D volume"
    if len(s.shape) != 3:
        return f"{len(s.shape)}D (a repeated acquisition), pipeline wants one 3D volume"
    if s.shape[2] < MIN_SLICES:
        return f"only {s.shape[2]} slice(s)"
    return None


def choose_series(
    summaries: Sequence[SeriesSummary],
    *,
    modality: str | None,
    series: str | int | None = None,
    where: str = "study",
    modalities: Collection[str] | None = None,
) -> SeriesChoice:
    """The volume to segment among ``summaries``.

    ``series`` (UID or number) forces the choice; several volumes of one series
    (echoes, image types) are then narrowed by the same ranking. ``modalities``
    (with ``modality=None``, for ``--pipeline auto``): the modalities a series may
    have, those of the shipped pipelines. Raises :class:`NoImageError` naming
    every candidate and why it was refused, or :class:`InputError` when
    ``modalities`` is given and every candidate has a modality outside it.
    """
    indices = list(range(len(summaries)))
    if series is not None:
        indices = [i for i in indices if summaries[i].matches(series)]
        if not indices:
            found = "; ".join(describe_series(s) for s in summaries)
            raise NoImageError(f"{where}: no series {series!r}; found: {found}")
    refused = {i: _unsuitable(summaries[i], modality, modalities) for i in indices}
    suitable = [i for i in indices if refused[i] is None]
    if not suitable:
        detail = "; ".join(f"{describe_series(summaries[i])}: {refused[i]}" for i in indices)
        found = sorted({summaries[i].modality or "unknown" for i in indices})
        if modalities is not None and all(_NO_PIPELINE in (refused[i] or "") for i in indices):
            # Not a broken study: medrecon ships nothing for it; the user can bring a pipeline.
            raise InputError(
                f"{where}: no shipped pipeline segments {'/'.join(found)} images ({detail}); "
                f"the shipped pipelines are made for {', '.join(sorted(modalities)) or 'none'}. "
                f"Pass --model NAME_OR_PATH with a model made for {'/'.join(found)} images."
            )
        hint = (
            f"Use a pipeline made for {'/'.join(found)} images (or --model auto), or pass "
            "--force to segment it anyway."
            if all("modality" in (refused[i] or "") for i in indices)
            else f"A pipeline needs one 3D {modality + ' ' if modality else ''}series of at "
            f"least {MIN_SLICES} "
            "slices; check that the study holds one (medrecon info lists its series)."
        )
        raise NoImageError(f"{where}: no series suits this pipeline ({detail}). {hint}")

    def rank(i: int) -> tuple:
        s = summaries[i]
        voxels = s.shape[0] * s.shape[1] * s.shape[2]
        return (_PLANE_RANK.get(s.orientation, 3), -voxels, s.spacing[2])

    best = min(suitable, key=rank)
    s = summaries[best]
    if series is not None and len(indices) == 1:
        reason = "chosen with --series"
    elif len(suitable) == 1:
        reason = f"the only suitable series of {len(summaries)}"
    else:
        reason = f"the largest {s.orientation} {s.modality} series of {len(suitable)} suitable"
    return SeriesChoice(best, reason)
