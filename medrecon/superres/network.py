"""A small, fast 2D residual network, its fine-tune loop, and its application along views.

The network refines a through-plane view that was already interpolated onto the
fine grid (cubic B-spline): it predicts a correction, so an untrained network is
the baseline itself. It is built from MONAI convolution blocks, kept small so
that a 512x512x60 stack at 4x fits the CPU budget (docs/reconstruct.md has the
FLOPs per pixel and a measured timing).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from medrecon.pipeline.device import bf16_supported
from medrecon.superres.pairs import TrainingPairs

__all__ = [
    "FineTuneReport",
    "apply_views",
    "build_network",
    "fine_tune",
    "flops_per_pixel",
]

log = logging.getLogger(__name__)


def build_network(channels: int = 16, layers: int = 4, dilations: list[int] | None = None):
    """A residual stack of ``layers`` 3x3 convolutions (PReLU between), ``channels`` wide.

    ``dilations`` (one per layer, default all 1) widens the receptive field at the
    same cost: dilations 1, 2, 4, 1 see 17 pixels against 9.
    """
    import torch
    from monai.networks.blocks import Convolution

    dil = list(dilations) if dilations is not None else [1] * layers
    if len(dil) != layers or any(int(d) < 1 for d in dil):
        raise ValueError(f"dilations {dilations} must give one integer >= 1 per layer ({layers})")

    class _Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            sizes = [1] + [channels] * (layers - 1) + [1]
            blocks = []
            for i, (cin, cout) in enumerate(itertools.pairwise(sizes)):
                last = i == layers - 1
                blocks.append(
                    Convolution(
                        spatial_dims=2,
                        in_channels=cin,
                        out_channels=cout,
                        kernel_size=3,
                        dilation=int(dil[i]),
                        act=None if last else "PRELU",
                        norm=None,
                        conv_only=last,
                    )
                )
            self.body = torch.nn.Sequential(*blocks)
            # Start as the identity: the interpolated input is already a fair answer.
            final = [m for m in self.body.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            torch.nn.init.zeros_(final.weight)
            torch.nn.init.zeros_(final.bias)

        def forward(self, x):
            return x + self.body(x)

    return _Residual()


def flops_per_pixel(net) -> int:
    """Multiply-adds x 2 of the network's convolutions for one output pixel."""
    import torch

    total = 0
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            kh, kw = m.kernel_size
            total += 2 * m.in_channels * m.out_channels * kh * kw // m.groups
    return total


@dataclass
class FineTuneReport:
    """What a fine-tune did, for the sidecar: steps, per-step MSE, final MSE and L1, seconds."""

    steps: int
    losses: list[float] = field(default_factory=list)
    final_mse: float = float("nan")
    final_l1: float = float("nan")
    seconds: float = 0.0


def fine_tune(
    net,
    pairs: TrainingPairs,
    *,
    steps: int = 200,
    batch: int = 16,
    lr: float = 1e-3,
    seed=0,
    device: str = "cpu",
) -> FineTuneReport:
    """Train ``net`` in place with MSE on ``pairs`` for ``steps`` Adam steps."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(pairs.inputs).to(device)
    y_all = torch.from_numpy(pairs.targets).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    report = FineTuneReport(steps)
    start = time.perf_counter()
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (min(batch, len(x_all)),), generator=gen).to(device)
        pred = net(x_all[idx])
        loss = torch.nn.functional.mse_loss(pred, y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        report.losses.append(float(loss.detach()))
    net.eval()
    with torch.no_grad():
        pred = net(x_all)
        report.final_mse = float(torch.nn.functional.mse_loss(pred, y_all))
        report.final_l1 = float(torch.nn.functional.l1_loss(pred, y_all))
    report.seconds = time.perf_counter() - start
    log.info("fine-tuned %d steps in %.1f s: MSE %.3g", steps, report.seconds, report.final_mse)
    return report


def apply_views(
    net,
    upsampled: np.ndarray,
    thick_axis: int,
    scale: tuple[float, float],
    *,
    batch: int = 1,
    device: str = "cpu",
    bf16: bool | None = None,
    footprint: np.ndarray | None = None,
) -> np.ndarray:
    """Refine ``upsampled`` (the stack interpolated to the fine grid) along both views.

    For each in-plane axis ``a``, the planes spanned by (``thick_axis``, ``a``) go
    through the network with the thick axis as image dimension 0, as in training;
    the two views' results are averaged. Intensities are scaled by ``scale`` on the
    way in and back on the way out. ``footprint`` (2D, over the in-plane axes in
    order) limits each plane to the run of ``a`` its row covers (widened to a
    multiple of 8 pixels); the rest of the plane, and a plane whose row is empty,
    pass through unchanged. It must already hold a margin of background around
    the tissue: the network's zero padding at a run's ends changes its edge.
    """
    import torch

    lo, hi = scale
    if bf16 is None:
        bf16 = bf16_supported(device)
    x = np.asarray(upsampled, dtype=np.float32)
    in_plane = [a for a in range(3) if a != thick_axis]
    # The mean of the views' outputs is the interpolation plus the mean of their
    # corrections (output - input), for any network: each run adds its own share in
    # place, so no whole-volume copy, transpose or normalisation is made per view
    # (about 3 s of memory traffic on a 512x512x253 grid).
    out = x.copy()
    share = (hi - lo) / len(in_plane)
    # Channels-last lets oneDNN run every convolution without reordering between
    # layers: about 3x faster with bf16 on these CPUs (docs/reconstruct.md).
    net = net.to(memory_format=torch.channels_last)
    with torch.no_grad():
        for i, a in enumerate(in_plane):
            other = in_plane[1 - i]
            # Views with the thick axis as image dimension 0, as in training.
            xv = np.transpose(x, (other, thick_axis, a))
            ov = np.transpose(out, (other, thick_axis, a))
            if footprint is None:
                runs = [
                    (s, min(s + batch, len(xv)), 0, xv.shape[2]) for s in range(0, len(xv), batch)
                ]
            else:
                rows = footprint if other < a else footprint.T
                runs = [(p, p + 1, *_run(row)) for p, row in enumerate(rows) if row.any()]
            for s, e, c0, c1 in runs:
                scaled = (np.ascontiguousarray(xv[s:e, :, c0:c1]) - lo) / (hi - lo)
                chunk = torch.from_numpy(scaled[:, None]).to(device)
                chunk = chunk.contiguous(memory_format=torch.channels_last)
                # bf16 only touches the correction: the input passes through in fp32.
                with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=bf16):
                    refined = net(chunk)[:, 0].float().cpu().numpy()
                ov[s:e, :, c0:c1] += (refined - scaled) * share
    return out


def _run(row: np.ndarray, step: int = 8) -> tuple[int, int]:
    """[lo, hi) around a row's True pixels, widened to multiples of ``step`` (fewer
    distinct plane widths, fewer convolution set-ups), clipped to the row."""
    hit = np.flatnonzero(row)
    lo = int(hit[0]) // step * step
    hi = min(len(row), -(-(int(hit[-1]) + 1) // step) * step)
    return lo, hi
