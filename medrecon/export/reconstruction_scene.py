"""A Slicer scene folder for a reconstruction: the result and its source stacks.

``medrecon reconstruct ... --scene DIR`` writes a self-contained folder that
Slicer opens in one File > Open of ``DIR/scene.mrml``:

``scene.mrml``, ``reconstruction.nii.gz`` (the result, the slice views'
background), ``reconstruction.json`` (its sidecar) and ``stacks/stack-<N>.nii.gz``,
each source stack as medrecon read it (DICOM stacks become NIfTI here), so the
stacks and the result can be compared slice by slice on the same world axes.
The scene is written by :func:`medrecon.export.scene.write_scene` (relative file
names; geometry read from the files, so NIfTI RAS and Slicer's LPS agree as in
``medrecon run``'s scene). The folder is built beside ``DIR`` and renamed into
place, so it is whole or absent; ``overwrite`` replaces only a folder this
writer made (or an empty one).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from medrecon.atomic import atomic_write_json, commit_staging, create_staging
from medrecon.errors import OutputError, OutputExistsError
from medrecon.volume import Volume

__all__ = [
    "RESULT",
    "SCENE",
    "SIDECAR",
    "STACK_DIR",
    "check_scene_folder",
    "write_reconstruction_scene",
]

logger = logging.getLogger(__name__)

SCENE = "scene.mrml"
RESULT = "reconstruction.nii.gz"
SIDECAR = "reconstruction.json"
STACK_DIR = "stacks"


def _is_ours(folder: Path) -> bool:
    """An empty folder, or one this writer made (its sidecar names a medrecon version)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    if not entries:
        return True
    try:
        sidecar = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (folder / SCENE).is_file() and isinstance(sidecar, dict) and "method" in sidecar


def check_scene_folder(folder: Path, overwrite: bool) -> None:
    """Raise :class:`~medrecon.errors.OutputExistsError` unless ``folder`` may be written."""
    if not folder.exists():
        return
    if not overwrite:
        raise OutputExistsError(f"scene folder {folder} exists; pass --overwrite to replace it")
    if not folder.is_dir() or not _is_ours(folder):
        raise OutputExistsError(
            f"scene folder {folder} holds files medrecon did not write; --overwrite only "
            "replaces a scene folder of an earlier `medrecon reconstruct --scene`. Choose "
            "another folder."
        )


def _stack_name(index: int, stack: Volume) -> str:
    """The node name: ``stack-1 t2_ax`` (the input's file or folder name, when known)."""
    source = stack.meta.extra.get("input_path")
    if not source:
        return f"stack-{index}"
    base = Path(str(source)).name
    base = re.sub(r"(\.nii\.gz|\.nii|\.nrrd|\.mha|\.zip)$", "", base, flags=re.IGNORECASE)
    return f"stack-{index} {base}".strip()


def write_reconstruction_scene(
    folder: str | os.PathLike[str],
    volume: Volume,
    stacks: Sequence[Volume],
    sidecar: dict,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the scene folder (see the module text); returns the scene file's path.

    Raises :class:`~medrecon.errors.OutputExistsError` when ``folder`` exists and
    ``overwrite`` is false, or holds files this writer did not make.
    """
    from medrecon.export.scene import write_scene
    from medrecon.io.nifti import write_nifti

    folder = Path(folder)
    check_scene_folder(folder, overwrite)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = create_staging(folder)
    except OSError as exc:
        raise OutputError(f"cannot write the scene folder {folder}: {exc.strerror}") from None
    try:
        write_nifti(volume, tmp / RESULT)
        atomic_write_json(tmp / SIDECAR, sidecar)
        (tmp / STACK_DIR).mkdir()
        nodes = []
        for index, stack in enumerate(stacks, start=1):
            rel = f"{STACK_DIR}/stack-{index}.nii.gz"
            write_nifti(stack, tmp / rel)
            nodes.append((rel, _stack_name(index, stack)))
        write_scene(tmp / SCENE, image=RESULT, image_name="reconstruction", volumes=nodes)
        commit_staging(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote scene folder %s (%d stacks)", folder, len(stacks))
    return folder / SCENE
