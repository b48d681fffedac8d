"""``load_totalsegmentator("total")``: a TotalSegmentator task as a medrecon Pipeline.

Each part of the task is an nnU-Net results folder TotalSegmentator has already
put on disk (:mod:`medrecon.foreign.totalseg.home`); each is loaded with the nnU-Net
loader (:func:`medrecon.foreign.nnunet.load_nnunet`), and the task's Pipeline
(engine ``totalsegmentator``) carries them with the task's facts. Labels use
TotalSegmentator's global numbering and names, coded by
:func:`medrecon.labels.terminology.describe_labels`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from medrecon.errors import PipelineError
from medrecon.foreign.totalseg.home import CHECKPOINT, find_part
from medrecon.foreign.totalseg.tasks import PREFIX, TaskSpec, parse_spec, task_spec
from medrecon.labels.terminology import describe_labels
from medrecon.pipeline.config import InferenceSpec, NetworkSpec, Pipeline

__all__ = ["TotalSegModel", "load_totalsegmentator"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TotalSegModel:
    """``Pipeline.foreign`` of a TotalSegmentator task: what its engine runs."""

    task: TaskSpec
    #: One nnU-Net Pipeline per part, in the task's order (later parts win overlaps).
    parts: tuple[Pipeline, ...]
    #: Each part's ``<Trainer>__<Plans>__<config>`` folder.
    folders: tuple[Path, ...]
    #: Mirroring test-time augmentation (TotalSegmentator: off).
    tta: bool
    #: Said once per segmentation (label coding, dataset.json mismatches, settings
    #: the nnU-Net loader could not take).
    notes: tuple[str, ...] = ()


def _load_nnunet():
    try:
        from medrecon.foreign.nnunet import load_nnunet
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise PipelineError(
            f"TotalSegmentator models run on medrecon's nnU-Net engine, which cannot be "
            f"imported here ({exc}); install medrecon with nnU-Net support (nnunetv2)"
        ) from exc
    return load_nnunet


def _with_step_size(part: Pipeline, step: float) -> Pipeline:
    """The part pipeline running windows at TotalSegmentator's step size."""
    return dataclasses.replace(part, foreign=dataclasses.replace(part.foreign, tile_step_size=step))


def _check_names(task: TaskSpec, index: int, part: Pipeline, notes: list[str]) -> None:
    """Compare the folder's dataset.json names with TotalSegmentator's class map."""
    expected = dict(task.parts[index].classes)
    found = {value: name for value, name in part.label_names.items() if value != 0}
    differ = [
        f"{value}: {found.get(value)!r} (map: {name!r})"
        for value, name in sorted(expected.items())
        if found.get(value) != name
    ]
    extra = sorted(set(found) - set(expected))
    if differ or extra:
        notes.append(
            f"{task.parts[index].folder}: dataset.json labels differ from TotalSegmentator's "
            f"class map ({'; '.join(differ[:5])}{' ...' if len(differ) > 5 else ''}"
            f"{'; unmapped values ' + str(extra) if extra else ''}); medrecon follows the map, "
            "as TotalSegmentator does"
        )


def load_totalsegmentator(
    task: str,
    *,
    home: str | Path | None = None,
    folds: tuple[int, ...] | list[int] | None = None,
    tta: bool | None = None,
) -> Pipeline:
    """The Pipeline running TotalSegmentator ``task`` from the weights already on disk.

    ``task``: ``total``, ``total:fast``, ``totalsegmentator:total_mr:fastest``...
    (:func:`~medrecon.foreign.totalseg.tasks.parse_spec`). ``home``: a
    TotalSegmentator home or results folder; default: where TotalSegmentator
    looks (``TOTALSEG_WEIGHTS_PATH``, ``TOTALSEG_HOME_DIR``, ``~/.totalsegmentator``).
    ``folds``: default TotalSegmentator's (fold 0). ``tta``: mirroring; default off,
    as TotalSegmentator runs it. Raises PipelineError naming every place looked in
    when a part's weights are missing; never downloads.
    """
    name, mode = parse_spec(task)
    spec = task_spec(name, mode, folds=tuple(folds) if folds is not None else None)
    use_tta = bool(tta) if tta is not None else False
    folders = tuple(find_part(spec, part, home=home) for part in spec.parts)
    load_nnunet = _load_nnunet()
    notes: list[str] = []
    parts = []
    for index, (part, folder) in enumerate(zip(spec.parts, folders, strict=True)):
        loaded = load_nnunet(
            folder,
            folds=spec.folds,
            configuration=part.configuration,
            checkpoint=CHECKPOINT,
            tta=use_tta,
        )
        _check_names(spec, index, loaded, notes)
        parts.append(_with_step_size(loaded, spec.step_size))
    labels, label_notes = describe_labels(sorted(spec.classes.items()), source=spec.spec)
    notes.extend(label_notes)
    first = parts[0]
    ids = [part.dataset_id for part in spec.parts]
    pipeline = Pipeline(
        name=f"{PREFIX}-{spec.task}" + ("" if mode == "default" else f"-{mode}"),
        modality=spec.modality,
        labels=labels,
        # nnU-Net normalises; these record what TotalSegmentator does first.
        preprocess=dataclasses.replace(
            first.preprocess, orientation="RAS", spacing=spec.spacing, crop_foreground=False
        ),
        network=NetworkSpec(
            name=spec.spec,
            args={
                "datasets": ids,
                "trainer": spec.parts[0].trainer,
                "plans": spec.parts[0].plans,
                "configuration": spec.parts[0].configuration,
                "folds": list(spec.folds),
                "step_size": spec.step_size,
                "classes_from": spec.class_source,
            },
        ),
        weights=None,
        inference=InferenceSpec(
            roi_size=first.inference.roi_size,
            overlap=round(1.0 - spec.step_size, 3),
            tta_flips=first.inference.tta_flips if use_tta else (),
        ),
        refine=(),
        description=(
            f"TotalSegmentator {spec.task} ({mode}): nnU-Net dataset(s) {ids} at "
            f"{spec.spacing[0]:g} mm, {len(labels)} classes"
        ),
        version=spec.parts[0].weights_release,
        source=folders[0],
        engine="totalsegmentator",
        foreign=TotalSegModel(
            task=spec, parts=tuple(parts), folders=folders, tta=use_tta, notes=tuple(notes)
        ),
    )
    log.info(
        "loaded TotalSegmentator %s: %d part(s) from %s",
        spec.spec,
        len(parts),
        ", ".join(str(f) for f in folders),
    )
    return pipeline
