"""One thick stack super-resolved through-plane, on its own fine grid.

The stack's fine grid keeps its in-plane voxels and orientation and samples the
thick axis at the in-plane spacing, from the first slice's centre plane to the
last's, so every source slice centre is where its header puts it. The pipeline:
cubic B-spline along the thick axis (the baseline) made consistent with the
measured slices, then the network's correction
on both through-plane views (:func:`network.apply_views`), with pretrained weights,
fine-tuned on the stack's own in-plane detail unless told not to, and last a
projection that makes the result reproduce the measured slices.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medrecon.superres.baselines import footprint_box, foreground_footprint
from medrecon.superres.consistency import project
from medrecon.superres.grid import OutputGrid, coverage, in_plane_spacing, resample_to
from medrecon.superres.network import FineTuneReport, apply_views, fine_tune
from medrecon.superres.pairs import intensity_scale, make_pairs, upsample_axis
from medrecon.superres.profile import SliceProfile, profile_from_volume
from medrecon.superres.weights import load_network
from medrecon.volume import Volume

__all__ = ["StackResult", "baseline_or_network", "fine_grid", "onto_grid", "super_resolve"]

log = logging.getLogger(__name__)

#: Default bounded fine-tune: enough to adapt the pretrained net (docs/reconstruct.md).
FINETUNE_STEPS = 300
#: Pixels of background kept around the foreground where the network runs: twice the
#: receptive-field radius of its four 3x3 layers, so the zero padding where a plane's
#: run ends never reaches tissue.
NETWORK_MARGIN = 8


@dataclass
class StackResult:
    """A super-resolved stack and how it was made (the sidecar's per-stack entry)."""

    volume: Volume
    profile: SliceProfile
    thick_axis: int
    fine_spacing: float
    warnings: list[str] = field(default_factory=list)
    finetune: FineTuneReport | None = None
    weights: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    #: [start, stop) per axis of the fine grid where the network ran (None: not run).
    network_box: list[list[int]] | None = None

    @property
    def factor(self) -> float:
        return self.profile.spacing / self.fine_spacing

    def describe(self) -> dict[str, object]:
        ft = self.finetune
        return {
            "thick_axis": self.thick_axis,
            "slice_profile": self.profile.describe(),
            "fine_spacing_mm": self.fine_spacing,
            "factor": round(self.factor, 4),
            "weights": self.weights,
            "finetune": None
            if ft is None
            else {
                "steps": ft.steps,
                "final_mse": ft.final_mse,
                "final_l1": ft.final_l1,
                "first_loss": ft.losses[0] if ft.losses else None,
                "last_loss": ft.losses[-1] if ft.losses else None,
                "seconds": round(ft.seconds, 3),
            },
            "network_box": self.network_box,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "warnings": list(self.warnings),
        }


def fine_grid(stack: Volume, axis: int, h: float) -> OutputGrid:
    """The stack's grid with ``axis`` sampled every ``h`` mm from its first to its last centre."""
    spacing = float(stack.spacing[axis])
    n = int(np.floor((stack.shape[axis] - 1) * spacing / h + 1e-6)) + 1
    affine = np.array(stack.affine, dtype=np.float64)
    affine[:3, axis] *= h / spacing
    shape = list(stack.spatial_shape)
    shape[axis] = n
    return OutputGrid(tuple(shape), affine)  # type: ignore[arg-type]


def super_resolve(
    stack: Volume,
    *,
    profile: SliceProfile | None = None,
    kind: str = "box",
    thickness: float | None = None,
    fine_spacing: float | None = None,
    weights: str | Path | None = "default",
    finetune_steps: int = FINETUNE_STEPS,
    device: str = "cpu",
    seed: int = 0,
    consistency: bool = True,
) -> StackResult:
    """Super-resolve ``stack`` along its thick axis onto :func:`fine_grid`.

    ``profile`` overrides what :func:`profile_from_volume` reads from the header
    (``kind`` and ``thickness`` feed it). ``weights`` is "default" (the shipped
    pretrained network), a path, or None (an untrained network: B-spline plus
    whatever the fine-tune learns). ``finetune_steps=0`` skips fine-tuning.
    ``consistency`` projects the B-spline input and the result onto the thick
    slices they must reproduce (:mod:`.consistency`).
    """
    import torch

    t0 = time.perf_counter()
    warnings: list[str] = []
    if profile is None:
        profile, axis, warnings = profile_from_volume(stack, kind=kind, thickness=thickness)
    else:
        _, axis, _ = profile_from_volume(stack, kind=profile.kind, thickness=profile.thickness)
    h = float(fine_spacing) if fine_spacing else in_plane_spacing(stack)
    grid = fine_grid(stack, axis, h)
    array = np.asarray(stack.array, dtype=np.float32)
    centres = np.arange(stack.shape[axis]) * profile.spacing
    up = upsample_axis(array, axis, centres, grid.shape[axis], h, order=3)
    if consistency:
        # The network learned its correction from consistent inputs (pairs.py).
        up = project(up, array, axis, profile, h, centres)
    seconds = {"interpolate": time.perf_counter() - t0}

    net, source = load_network(weights, device=device)
    report = None
    if finetune_steps > 0:
        t = time.perf_counter()
        pairs = make_pairs(stack, profile, axis, seed=seed, consistent=consistency)
        seconds["pairs"] = time.perf_counter() - t
        # From pretrained weights a gentle rate adapts; from scratch it must learn.
        lr = 1e-3 if source == "untrained" else 2e-4
        report = fine_tune(net, pairs, steps=finetune_steps, lr=lr, seed=seed, device=device)
        seconds["finetune"] = report.seconds
    t = time.perf_counter()
    # Only where there is something to correct: in the air around a body (often half
    # of a CT's plane) the interpolation stands, and the network's pass costs less.
    # The box crops the volume; within it each plane runs only over its footprint.
    foot = foreground_footprint(array, stack.meta.modality, axis, NETWORK_MARGIN)
    box = footprint_box(foot, axis)
    inside = foot[tuple(b for i, b in enumerate(box) if i != axis)]
    with torch.inference_mode():
        up[box] = apply_views(
            net, up[box], axis, intensity_scale(array), device=device, footprint=inside
        )
    out = up
    seconds["apply"] = time.perf_counter() - t
    if consistency:
        t = time.perf_counter()
        out = project(out, array, axis, profile, h, centres)
        seconds["consistency"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    log.info(
        "super-resolved axis %d %.3gx (%s) in %.1f s", axis, profile.spacing / h, source,
        seconds["total"],
    )  # fmt: skip
    return StackResult(
        grid.volume(out, stack.meta.copy()), profile, axis, h, warnings, report, source, seconds,
        network_box=[list(b.indices(n)[:2]) for b, n in zip(box, out.shape)],
    )  # fmt: skip


def baseline_or_network(stack: Volume, method: str, options: dict) -> StackResult:
    """``stack`` on its fine grid by ``method``: "network" (:func:`super_resolve`) or a baseline."""
    if method == "network":
        return super_resolve(stack, **options)
    # Baselines: the same fine grid, no network.
    t = time.perf_counter()
    profile, axis, warnings = profile_from_volume(
        stack, kind=options["kind"], thickness=options["thickness"]
    )
    h = in_plane_spacing(stack)
    grid = fine_grid(stack, axis, h)
    vol = resample_to(stack, grid, order=1 if method == "linear" else 3)
    return StackResult(
        vol, profile, axis, h, warnings, weights=method,
        seconds={"total": time.perf_counter() - t},
    )  # fmt: skip


def onto_grid(result: StackResult, stack: Volume, grid: OutputGrid) -> tuple[Volume, np.ndarray]:
    """``result`` sampled once onto ``grid`` (cubic B-spline) and where ``stack`` covers it.

    When ``grid`` is the result's own fine grid, nothing is resampled.
    """
    own = result.volume
    if own.spatial_shape == grid.shape and np.allclose(own.affine, grid.affine, atol=1e-6):
        return own, np.ones(grid.shape, bool)
    return resample_to(own, grid, order=3), coverage(stack, grid)
