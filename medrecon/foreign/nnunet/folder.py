"""Find and read an nnU-Net v2 results folder; describe it as a medrecon Pipeline.

A trainer folder is ``<Trainer>__<Plans>__<configuration>`` holding
dataset.json, plans.json and ``fold_N/`` checkpoints; a dataset folder
(``DatasetNNN_Name``) holds one or more trainer folders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from medrecon.errors import PipelineError
from medrecon.foreign.nnunet.plans import (
    Configuration,
    LabelScheme,
    read_configuration,
    read_json,
    read_label_scheme,
)

__all__ = ["NnunetModel", "is_nnunet_folder", "load_nnunet", "trainer_folder"]

logger = logging.getLogger(__name__)

PREFERRED = "3d_fullres"


@dataclass(frozen=True)
class NnunetModel:
    """Everything the nnU-Net engine needs, read and checked when the folder is loaded."""

    folder: Path
    dataset_name: str
    trainer: str
    plans_name: str
    configuration: Configuration
    labels: LabelScheme
    folds: tuple[str, ...]
    checkpoints: tuple[Path, ...]
    tta: bool
    channel: str
    #: Sliding-window step as a fraction of the patch (nnU-Net's default 0.5;
    #: TotalSegmentator runs some tasks at 0.8).
    tile_step_size: float = 0.5
    #: Said with every segmentation (e.g. label names with no known code).
    notes: tuple[str, ...] = ()


def _is_trainer_folder(path: Path) -> bool:
    return (
        path.is_dir()
        and len(path.name.split("__")) == 3
        and (path / "dataset.json").is_file()
        and (path / "plans.json").is_file()
        and any(p.is_dir() and p.name.startswith("fold_") for p in path.iterdir())
    )


def _trainer_folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if _is_trainer_folder(p))


def is_nnunet_folder(path) -> bool:
    """True for an nnU-Net v2 trainer results folder or a dataset folder holding some."""
    path = Path(path)
    if not path.is_dir():
        return False
    return _is_trainer_folder(path) or bool(_trainer_folders(path))


def trainer_folder(path: Path, configuration: str | None) -> Path:
    """The trainer folder to use: ``path`` itself, or the one chosen inside a dataset folder."""
    if _is_trainer_folder(path):
        have = path.name.split("__")[2]
        if configuration is not None and configuration != have:
            raise PipelineError(
                f"{path} holds configuration {have!r}, not {configuration!r}; give the dataset "
                "folder or the trainer folder of that configuration"
            )
        return path
    candidates = _trainer_folders(path) if path.is_dir() else []
    if not candidates:
        raise PipelineError(
            f"{path} is not an nnU-Net v2 results folder: expected <Trainer>__<Plans>__<config>/ "
            "with dataset.json, plans.json and fold_N/, or a DatasetNNN_Name/ folder holding them"
        )
    by_config = {}
    for folder in candidates:
        by_config.setdefault(folder.name.split("__")[2], []).append(folder)
    if configuration is not None:
        chosen = by_config.get(configuration)
        if not chosen:
            raise PipelineError(
                f"{path} has no trained configuration {configuration!r}; it has "
                f"{', '.join(sorted(by_config))}"
            )
    elif PREFERRED in by_config:
        chosen = by_config[PREFERRED]
    elif len(by_config) == 1:
        chosen = next(iter(by_config.values()))
    else:
        raise PipelineError(
            f"{path} holds several configurations ({', '.join(sorted(by_config))}) and none "
            "was chosen; pass configuration=<one of them>"
        )
    if len(chosen) > 1:
        raise PipelineError(
            f"{path} holds several trainer folders for that configuration "
            f"({', '.join(p.name for p in chosen)}); give the one to use as the path"
        )
    return chosen[0]


def _folds(folder: Path, folds, checkpoint: str) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    if folds is None:
        names = sorted(
            p.name[5:]
            for p in folder.iterdir()
            if p.is_dir() and p.name.startswith("fold_") and (p / checkpoint).is_file()
        )
        if not names:
            raise PipelineError(
                f"{folder}: no fold_*/{checkpoint} found; train a fold or name another "
                "checkpoint (e.g. checkpoint_best.pth)"
            )
    else:
        names = [str(f) for f in ([folds] if isinstance(folds, (int, str)) else folds)]
        if not names:
            raise PipelineError(f"{folder}: folds is empty; give at least one fold")
    paths = tuple(folder / f"fold_{name}" / checkpoint for name in names)
    for path in paths:
        if not path.is_file():
            raise PipelineError(
                f"checkpoint {path} not found; train that fold or choose other folds"
            )
    return tuple(names), paths


def read_model(
    path, *, folds=None, configuration=None, checkpoint="checkpoint_final.pth", tta=True
):
    """The :class:`NnunetModel` for a results folder."""
    folder = trainer_folder(Path(path), configuration)
    trainer, plans_name, config_name = folder.name.split("__")
    dataset = read_json(folder / "dataset.json")
    plans = read_json(folder / "plans.json")
    channels = dataset.get("channel_names") or dataset.get("modality") or {}
    if len(channels) != 1:
        raise PipelineError(
            f"{folder / 'dataset.json'}: the model takes {len(channels)} input channels "
            f"({', '.join(f'{k}: {v}' for k, v in channels.items())}); medrecon feeds one "
            "image, so only single-channel models can run"
        )
    names, paths = _folds(folder, folds, checkpoint)
    return NnunetModel(
        folder=folder,
        dataset_name=str(plans.get("dataset_name") or folder.parent.name),
        trainer=trainer,
        plans_name=plans_name,
        configuration=read_configuration(plans, config_name, folder / "plans.json"),
        labels=read_label_scheme(dataset, folder / "dataset.json"),
        folds=names,
        checkpoints=paths,
        tta=bool(tta),
        channel=str(next(iter(channels.values()))),
    )


def load_nnunet(
    path, *, folds=None, configuration=None, checkpoint="checkpoint_final.pth", tta=True
):
    """A Pipeline (engine ``nnunet``) running the nnU-Net v2 model in ``path``."""
    from medrecon.labels.terminology import describe_labels
    from medrecon.pipeline.config import OUTPUTS, NetworkSpec, Pipeline, PreprocessSpec

    model = read_model(
        path, folds=folds, configuration=configuration, checkpoint=checkpoint, tta=tta
    )
    config = model.configuration
    arch = config.architecture.class_name.rpartition(".")[2]
    labels, notes = describe_labels(
        sorted(model.labels.names.items()), source=f"nnU-Net model {model.dataset_name}"
    )
    model = replace(model, notes=tuple(notes))
    modality = "CT" if model.channel.strip().upper() == "CT" else "MR"
    logger.info(
        "nnU-Net model %s/%s: %d labels, folds %s",
        model.dataset_name,
        config.name,
        len(labels),
        ", ".join(model.folds),
    )
    return Pipeline(
        name=f"nnunet:{model.dataset_name}/{config.name}",
        modality=modality,
        labels=labels,
        preprocess=PreprocessSpec(),
        network=NetworkSpec(name=f"nnunet:{arch}", args={}),
        weights=None,
        refine=(),
        outputs=OUTPUTS,
        description=(
            f"nnU-Net v2 {model.trainer}__{model.plans_name}__{config.name}, "
            f"folds {', '.join(model.folds)}, mirroring {'on' if model.tta else 'off'}"
        ),
        source=model.folder,
        engine="nnunet",
        foreign=model,
    )
