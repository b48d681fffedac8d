"""TotalSegmentator's tasks as facts: which nnU-Net datasets each runs, and how.

The table (``tasks.json``, shipped in this package, read on first use) holds what
TotalSegmentator v2 itself uses: per task and mode (``default``, ``fast``,
``fastest``) the dataset IDs, trainer, plans, configuration, fold, the spacing it
resamples to before nnU-Net, the sliding-window step size, and each dataset's
class map. Class maps come from an installed ``totalsegmentator`` package's
``map_to_binary`` when one is importable (weights downloaded by that version
match its own maps), else from the table.

The spec syntax is ``totalsegmentator:TASK`` or ``totalsegmentator:TASK:MODE``,
e.g. ``totalsegmentator:total``, ``totalsegmentator:total:fast``,
``totalsegmentator:total_mr:fastest``: TASK is TotalSegmentator's ``--task``,
MODE its ``--fast`` / ``--fastest`` switch.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from medrecon.errors import PipelineError

__all__ = ["MODES", "PREFIX", "PartSpec", "TaskSpec", "parse_spec", "task_names", "task_spec"]

log = logging.getLogger(__name__)

PREFIX = "totalsegmentator"
MODES = ("default", "fast", "fastest")


@dataclass(frozen=True)
class PartSpec:
    """One nnU-Net model of a task: where its folder is and what its labels mean."""

    dataset_id: int
    #: The folder name TotalSegmentator downloads (``Dataset291_TotalSegmentator_...``).
    folder: str
    trainer: str
    plans: str
    configuration: str
    #: The model's own label value -> TotalSegmentator class name.
    classes: Mapping[int, str]
    weights_release: str

    @property
    def trainer_folder(self) -> str:
        return f"{self.trainer}__{self.plans}__{self.configuration}"


@dataclass(frozen=True)
class TaskSpec:
    """A TotalSegmentator task in one mode: its parts and what runs around them."""

    task: str
    mode: str
    modality: str
    parts: tuple[PartSpec, ...]
    #: TotalSegmentator's global numbering: value -> class name.
    classes: Mapping[int, str]
    #: Isotropic spacing (mm) the image is resampled to before nnU-Net.
    spacing: tuple[float, float, float]
    #: nnU-Net's tile step size (fraction of the patch); TotalSegmentator uses 0.8
    #: for its total tasks to halve the windows, 0.5 (nnU-Net's default) otherwise.
    step_size: float
    folds: tuple[int, ...]
    #: ``totalseg_download_weights -t <download>`` puts this mode's weights in place.
    download: str
    #: Where the class maps came from (the table or an installed package).
    class_source: str

    @property
    def spec(self) -> str:
        """The ``--model`` string naming this task and mode."""
        suffix = "" if self.mode == "default" else f":{self.mode}"
        return f"{PREFIX}:{self.task}{suffix}"


@functools.cache
def _table() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("tasks.json").read_text("utf-8")
    return json.loads(text)


def task_names() -> tuple[str, ...]:
    """The tasks medrecon can run, as TotalSegmentator names them."""
    return tuple(_table()["tasks"])


def parse_spec(spec: str) -> tuple[str, str]:
    """``"totalsegmentator:total:fast"`` -> ``("total", "fast")``.

    The ``totalsegmentator:`` prefix is optional; without a mode it is ``default``.
    """
    text = spec.strip()
    if text.lower().startswith(f"{PREFIX}:"):
        text = text[len(PREFIX) + 1 :]
    task, _, mode = text.partition(":")
    task, mode = task.strip(), (mode.strip() or "default")
    known = task_names()
    if task not in known:
        hint = ""
        for suffix in ("fastest", "fast"):
            stem = task.replace(f"_{suffix}", "").replace(f" --{suffix}", "")
            if stem != task and stem in known:
                hint = f" (for TotalSegmentator's --{suffix}, write {PREFIX}:{stem}:{suffix})"
                break
        raise PipelineError(
            f"{spec!r}: unknown TotalSegmentator task {task!r}{hint}; medrecon runs "
            f"{', '.join(known)}, as {PREFIX}:TASK or {PREFIX}:TASK:fast"
        )
    modes = tuple(_table()["tasks"][task]["modes"])
    if mode not in modes:
        raise PipelineError(
            f"{spec!r}: task {task!r} has no mode {mode!r}; its modes: "
            f"{', '.join(m for m in modes)} (write {PREFIX}:{task}:MODE, no mode = default)"
        )
    return task, mode


def _package_maps() -> Any | None:
    """An installed TotalSegmentator's ``map_to_binary`` (pure data), or None."""
    try:
        from totalsegmentator import map_to_binary  # type: ignore[import-not-found]
    except ImportError:
        return None
    return map_to_binary


# map_to_binary's names for the part maps of each multi-part task.
_PART_MAPS = {"total": "class_map_5_parts", "total_mr": "class_map_parts_mr"}


def _class_maps(task: str, datasets: list[dict[str, Any]]) -> tuple[dict, list[dict], str]:
    """Global map and per-dataset maps: the installed package's if it has them."""
    ours = (
        {int(k): v for k, v in _table()["classes"][task].items()},
        [{int(k): v for k, v in d["classes"].items()} for d in datasets],
    )
    package = _package_maps()
    if package is None:
        return ours[0], ours[1], "medrecon's table (TotalSegmentator v2)"
    try:
        global_map = {int(k): str(v) for k, v in package.class_map[task].items()}
        parts = []
        for d in datasets:
            if d["part"] is None:
                parts.append(global_map)
            else:
                part = getattr(package, _PART_MAPS[task])[d["part"]]
                parts.append({int(k): str(v) for k, v in part.items()})
    except (AttributeError, KeyError) as exc:
        log.warning(
            "installed totalsegmentator has no class map for %s (%s); using medrecon's table",
            task,
            exc,
        )
        return ours[0], ours[1], "medrecon's table (TotalSegmentator v2)"
    return global_map, parts, "the installed totalsegmentator package"


def task_spec(
    task: str, mode: str = "default", *, folds: tuple[int, ...] | None = None
) -> TaskSpec:
    """The facts for ``task`` in ``mode`` (see :func:`parse_spec` for the names)."""
    task, mode = parse_spec(f"{task}:{mode}")
    table = _table()
    entry = table["tasks"][task]
    setting = entry["modes"][mode]
    datasets = [table["datasets"][str(i)] for i in setting["datasets"]]
    global_map, part_maps, source = _class_maps(task, datasets)
    parts = tuple(
        PartSpec(
            dataset_id=int(dataset_id),
            folder=d["folder"],
            trainer=setting["trainer"],
            plans=table["plans"],
            configuration=table["configuration"],
            classes=part_map,
            weights_release=d["weights_release"],
        )
        for dataset_id, d, part_map in zip(setting["datasets"], datasets, part_maps, strict=True)
    )
    spacing = float(setting["spacing"])
    return TaskSpec(
        task=task,
        mode=mode,
        modality=entry["modality"],
        parts=parts,
        classes=global_map,
        spacing=(spacing, spacing, spacing),
        step_size=float(setting["step_size"]),
        folds=tuple(folds) if folds is not None else tuple(table["folds"]),
        download=setting["download"],
        class_source=source,
    )
