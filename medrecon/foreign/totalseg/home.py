"""Where TotalSegmentator keeps its nnU-Net weights, found the way it finds them.

TotalSegmentator (``totalsegmentator/config.py``) puts every model under one
nnU-Net results folder:

* ``$TOTALSEG_WEIGHTS_PATH`` when set (the results folder itself);
* else ``$TOTALSEG_HOME_DIR/nnunet/results`` when ``TOTALSEG_HOME_DIR`` is set;
* else ``~/.totalsegmentator/nnunet/results`` (``/tmp/.totalsegmentator`` when the
  home directory is ``/``, as in some containers).

Each model is ``<results>/Dataset<ID>_<name>/<Trainer>__<Plans>__<config>/fold_<f>/
checkpoint_final.pth``. medrecon looks in the same places (an explicit ``home``
instead, when given), reads the environment when called, never at import, and
never downloads anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from medrecon.errors import PipelineError
from medrecon.foreign.totalseg.tasks import PartSpec, TaskSpec

__all__ = ["CHECKPOINT", "find_part", "results_folders"]

CHECKPOINT = "checkpoint_final.pth"


def _default_home() -> Path:
    # TotalSegmentator maps a home of "/" (docker) to /tmp; so do we, to find its files.
    home = Path.home()
    return (Path("/tmp") if str(home) == "/" else home) / ".totalsegmentator"


def results_folders(
    home: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> list[tuple[Path, str]]:
    """The results folders to search, first first, each with why it is searched.

    ``home`` is a TotalSegmentator home (holding ``nnunet/results``) or a results
    folder itself; given, it is the only place looked in.
    """
    env = os.environ if environ is None else environ
    if home is not None:
        root = Path(home).expanduser()
        return [(root / "nnunet" / "results", f"home={root}"), (root, f"home={root}")]
    found: list[tuple[Path, str]] = []
    if env.get("TOTALSEG_WEIGHTS_PATH"):
        found.append((Path(env["TOTALSEG_WEIGHTS_PATH"]).expanduser(), "TOTALSEG_WEIGHTS_PATH"))
    if env.get("TOTALSEG_HOME_DIR"):
        root = Path(env["TOTALSEG_HOME_DIR"]).expanduser()
        found.append((root / "nnunet" / "results", "TOTALSEG_HOME_DIR"))
    found.append((_default_home() / "nnunet" / "results", "TotalSegmentator's default home"))
    return found


def _dataset_folder(results: Path, part: PartSpec) -> Path | None:
    """The part's dataset folder in ``results``: its known name, else the one folder
    named ``Dataset<ID>_*`` (nnU-Net finds datasets by ID, and TotalSegmentator has
    renamed some, e.g. Dataset297's ``_v204`` suffix)."""
    exact = results / part.folder
    if exact.is_dir():
        return exact
    if not results.is_dir():
        return None
    matches = sorted(p for p in results.glob(f"Dataset{part.dataset_id:03d}_*") if p.is_dir())
    with_model = [p for p in matches if (p / part.trainer_folder).is_dir()]
    if len(with_model) > 1:
        raise PipelineError(
            f"{results}: several folders hold dataset {part.dataset_id} "
            f"({', '.join(p.name for p in with_model)}); remove all but one"
        )
    return with_model[0] if with_model else None


def find_part(
    task: TaskSpec,
    part: PartSpec,
    *,
    home: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The ``<Trainer>__<Plans>__<config>`` folder of ``part`` with every fold's
    checkpoint, or a PipelineError naming each path looked in and how to fill it."""
    looked: list[str] = []
    for results, why in results_folders(home, environ):
        dataset = _dataset_folder(results, part)
        if dataset is None:
            looked.append(f"{results / part.folder} ({why}): not there")
            continue
        model = dataset / part.trainer_folder
        missing = [
            f"fold_{f}/{CHECKPOINT}"
            for f in task.folds
            if not (model / f"fold_{f}" / CHECKPOINT).is_file()
        ]
        if not missing:
            return model
        looked.append(f"{model} ({why}): lacks {', '.join(missing)}")
    where = "\n  ".join(looked)
    index = task.parts.index(part) + 1
    raise PipelineError(
        f"TotalSegmentator weights for {task.spec} (part {index} of {len(task.parts)}: "
        f"{part.folder}, {part.trainer_folder}, folds {list(task.folds)}) not found. "
        f"Looked in:\n  {where}\n"
        "medrecon never downloads weights. Put them there with TotalSegmentator "
        f"(`totalseg_download_weights -t {task.download}`, or run `TotalSegmentator -i CT.nii.gz "
        f"-o out --task {task.task}{'' if task.mode == 'default' else ' --' + task.mode}` once), "
        "or point TOTALSEG_HOME_DIR / TOTALSEG_WEIGHTS_PATH (or home=) at the folder that "
        "holds them."
    )
