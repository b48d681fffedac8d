"""``medrecon.reconstruct``: thick stacks in, one volume and its sidecar out.

Each stack is super-resolved on its own fine grid (:mod:`.stack`), then sampled
once onto the output grid: the default isotropic grid at the finest in-plane
spacing covering the stacks, or exactly a reference image's grid (``like``).
Several stacks are registered rigidly to the first and fused (:mod:`.multi`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medrecon.superres.grid import OutputGrid, isotropic_grid, like_grid
from medrecon.superres.profile import ReconstructError
from medrecon.superres.stack import FINETUNE_STEPS, StackResult, baseline_or_network, onto_grid
from medrecon.volume import Volume

__all__ = [
    "METHODS",
    "Reconstruction",
    "load_stacks",
    "reconstruct",
    "sidecar_path",
    "write_reconstruction",
]

log = logging.getLogger(__name__)

#: "network": B-spline plus the learned correction; the others are the plain baselines.
METHODS = ("network", "bspline", "linear")


@dataclass
class Reconstruction:
    """The reconstructed volume, the per-stack results and the sidecar dictionary."""

    volume: Volume
    sidecar: dict
    stacks: list[Volume] = field(default_factory=list)


def load_stacks(
    stacks: Sequence[Volume | str | Path], series: Sequence[str | int | None] | None = None
) -> list[Volume]:
    """Volumes for ``stacks`` (loaded with ``medrecon.io.load``; ``series`` one per stack)."""
    from medrecon.io import load

    if not stacks:
        raise ReconstructError("reconstruct needs at least one stack")
    series = list(series) if series else [None] * len(stacks)
    if len(series) != len(stacks):
        raise ReconstructError(
            f"{len(series)} series choices for {len(stacks)} stacks; give one per stack"
        )
    out = []
    for item, choice in zip(stacks, series):
        if isinstance(item, Volume):
            out.append(item)
        else:
            vol = load(item, series=choice)
            vol.meta.extra.setdefault("input_path", str(item))
            out.append(vol)
    return out


def reconstruct(
    stacks: Sequence[Volume | str | Path],
    *,
    spacing: float | None = None,
    like: Volume | OutputGrid | str | Path | None = None,
    series: Sequence[str | int | None] | None = None,
    method: str = "network",
    kind: str = "box",
    thickness: float | None = None,
    weights: str | Path | None = "default",
    finetune: bool = True,
    finetune_steps: int = FINETUNE_STEPS,
    device: str = "cpu",
    seed: int = 0,
    consistency: bool = True,
    register: bool = True,
) -> Reconstruction:
    """Reconstruct one volume from thick ``stacks`` (Volumes or paths medrecon loads).

    ``spacing`` sets the isotropic output spacing (default: the finest in-plane
    spacing); ``like`` puts the output exactly on that image's grid instead.
    ``kind`` ("box" or "gaussian") and ``thickness`` (mm, else the header's
    SliceThickness) give the slice profile. ``method`` "bspline" or "linear" gives
    the interpolation baselines. ``finetune=False`` applies the pretrained network
    as shipped; ``consistency=False`` skips the projection onto the measured slices.
    Several stacks are registered rigidly to the first unless ``register=False``.
    """
    from medrecon._version import __version__

    if method not in METHODS:
        raise ReconstructError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if spacing is not None and like is not None:
        raise ReconstructError("give either an output spacing or a --like image, not both")
    if spacing is not None and not spacing > 0:
        raise ReconstructError(f"output spacing must be a positive number of mm, got {spacing}")
    t0 = time.perf_counter()
    volumes = load_stacks(stacks, series)
    grid = like_grid(like) if like is not None else isotropic_grid(volumes, spacing)
    options = {
        "kind": kind,
        "thickness": thickness,
        "weights": weights,
        "finetune_steps": finetune_steps if finetune else 0,
        "device": device,
        "seed": seed,
        "consistency": consistency,
    }
    if len(volumes) > 1:
        from medrecon.superres.multi import reconstruct_several

        volume, details = reconstruct_several(volumes, grid, method, options, register=register)
    else:
        result = baseline_or_network(volumes[0], method, options)
        volume, details = _onto_grid(result, volumes[0], grid)
    # The stacks' SliceThickness describes the source slices, not the reconstruction.
    volume.meta.extra.pop("slice_thickness", None)
    sidecar = {
        "medrecon_version": __version__,
        "method": method,
        "output": {
            "shape": list(grid.shape),
            "spacing_mm": [round(s, 6) for s in grid.spacing],
            "affine": np.round(grid.affine, 6).tolist(),
            "like": None if like is None else str(getattr(like, "name", "")) or "given grid",
        },
        **details,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    sidecar["warnings"] = list(sidecar.pop("stack_warnings", [])) + [
        w for s in sidecar.get("stacks", []) for w in s.get("warnings", [])
    ]
    return Reconstruction(volume, sidecar, volumes)


def _onto_grid(result: StackResult, stack: Volume, grid: OutputGrid) -> tuple[Volume, dict]:
    """The stack's fine-grid result sampled once onto ``grid``; outside its field, background."""
    entry = {"input": stack.meta.extra.get("input_path"), **result.describe()}
    vol, inside = onto_grid(result, stack, grid)
    frac = float(inside.mean())
    if frac < 1.0:
        background = float(np.min(stack.array))
        vol.array[~inside] = background
        entry.setdefault("warnings", []).append(
            f"{100 * (1 - frac):.1f}% of the output grid lies outside the stack: set to "
            f"{background:g}"
        )
    return vol, {"stacks": [entry], "coverage": round(frac, 6)}


def sidecar_path(path: str | Path) -> Path:
    """``OUT.json`` beside ``OUT.nii.gz`` (or ``OUT.nii``); other names are refused."""
    path = Path(path)
    for suffix in (".nii.gz", ".nii"):
        if path.name.lower().endswith(suffix):
            return path.with_name(path.name[: -len(suffix)] + ".json")
    raise ReconstructError(f"output {path} must be a .nii or .nii.gz file")


def write_reconstruction(result: Reconstruction, path: str | Path) -> tuple[Path, Path]:
    """Write the volume (NIfTI) and its JSON sidecar beside it (``OUT.json``), atomically."""
    from medrecon.atomic import atomic_write_json
    from medrecon.io.nifti import write_nifti

    path = Path(path)
    sidecar = sidecar_path(path)
    write_nifti(result.volume, path)
    atomic_write_json(sidecar, result.sidecar)
    return path, sidecar
