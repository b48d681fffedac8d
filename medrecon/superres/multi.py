"""Several stacks of one region: register to the first, reconstruct each, fuse once.

Each stack after the first is registered rigidly to the first (:mod:`.register`);
one that fails is reported in the sidecar and left out, never blended. Every
kept stack is super-resolved on its own fine grid, sampled onto the output grid,
and the stacks are fused with weights that follow each one's resolution along
each direction (:mod:`.fuse`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from medrecon.superres.fuse import fuse
from medrecon.superres.grid import OutputGrid
from medrecon.superres.register import apply_rigid, check_stacks, register_rigid
from medrecon.superres.stack import baseline_or_network, onto_grid
from medrecon.volume import Volume

__all__ = ["reconstruct_several"]

log = logging.getLogger(__name__)


def _through_plane(volume: Volume, axis: int) -> np.ndarray:
    column = np.asarray(volume.affine[:3, axis], dtype=np.float64)
    return column / np.linalg.norm(column)


def reconstruct_several(
    stacks: Sequence[Volume], grid: OutputGrid, method: str, options: dict, *, register=True
) -> tuple[Volume, dict]:
    """The fused reconstruction of ``stacks`` on ``grid`` and the sidecar's details.

    ``register=False`` trusts the headers' positions (stacks acquired without
    motion between them, or already aligned).
    """
    warnings = check_stacks(stacks)
    entries: list[dict] = []
    # (index, stack as fused, its registration record) for every stack kept.
    kept: list[tuple[int, Volume, dict | str]] = [(0, stacks[0], "reference (stack 0)")]
    t = time.perf_counter()
    for i, stack in enumerate(stacks[1:], start=1):
        if not register:
            kept.append((i, stack, {"method": "none: the headers' positions were trusted"}))
            continue
        reg = register_rigid(stack, stacks[0], seed=options.get("seed", 0))
        if not reg.ok:
            msg = f"stack {i} failed to register to stack 0 and was left out: {reg.reason}"
            log.warning("%s", msg)
            warnings.append(msg)
            entries.append(
                {
                    "index": i,
                    "input": stack.meta.extra.get("input_path"),
                    "used": False,
                    "registration": reg.describe(),
                }
            )
            continue
        kept.append((i, apply_rigid(stack, reg), reg.describe()))
    register_seconds = time.perf_counter() - t

    on_grid, masks, directions, profiles = [], [], [], []
    for index, stack, registration in kept:
        result = baseline_or_network(stack, method, options)
        vol, inside = onto_grid(result, stack, grid)
        on_grid.append(vol)
        masks.append(inside)
        directions.append(_through_plane(stack, result.thick_axis))
        profiles.append(result.profile)
        entries.append(
            {
                "index": index,
                "input": stack.meta.extra.get("input_path"),
                "used": True,
                "registration": registration,
                "coverage": round(float(inside.mean()), 6),
                **result.describe(),
            }
        )
    t = time.perf_counter()
    if len(on_grid) == 1:
        array = np.asarray(on_grid[0].array, np.float32)
        fusion = {"method": "single stack (the others were left out)"}
    else:
        array, fusion = fuse(on_grid, directions, profiles, grid, masks)
    union = np.logical_or.reduce(masks)
    background = float(min(np.min(stack.array) for _, stack, _ in kept))
    array = np.where(union, array, background).astype(np.float32)
    fusion["seconds"] = round(time.perf_counter() - t, 3)
    entries.sort(key=lambda e: e["index"])
    details = {
        "stacks": entries,
        "fusion": fusion,
        "registration_seconds": round(register_seconds, 3),
        "coverage": round(float(union.mean()), 6),
        "stack_warnings": warnings,
    }
    return grid.volume(array, stacks[0].meta.copy()), details
