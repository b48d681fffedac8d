"""Does the super-resolution network's size or its training data limit the 4x gain?

Two ways to train one architecture, both scored on bench_reconstruct.py's box 4x
stacks (the CT thick along z, the MR thick along y) without and with the 300-step
fine-tune, against cubic B-spline:

* ``fair``: the shipped recipe (scripts/train_superres.py: axial planes of the CT and
  the two head CTs, random profiles), ``STEPS`` steps in 12 rounds;
* ``oracle``: pairs cut from the benchmark's own test direction (the CT's z degraded
  with the test's 12 mm box), then scored on that same CT without a fine-tune. It
  trains on the answer, so it is an upper bound for the architecture, never a result.

    python scripts/superres_capacity.py fair  OUT '{"channels": 16, "layers": 4}' 4000
    python scripts/superres_capacity.py oracle OUT '{"channels": 32, "layers": 6,
        "dilations": [1, 2, 4, 2, 1, 1]}' 3000

Figures of 2026-12-04 are in docs/reconstruct.md ("What was tried").
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "benchmarks")]

import train_superres  # noqa: E402
from bench_reconstruct import SHARED, eval_mask, volumes  # noqa: E402

from medrecon.superres import SliceProfile  # noqa: E402
from medrecon.superres.api import reconstruct  # noqa: E402
from medrecon.superres.baselines import psnr  # noqa: E402
from medrecon.superres.degrade import simulate_stack  # noqa: E402
from medrecon.superres.network import build_network, fine_tune  # noqa: E402
from medrecon.superres.pairs import TrainingPairs, degrade_in_plane, intensity_scale  # noqa: E402
from medrecon.superres.weights import save_network  # noqa: E402

log = logging.getLogger("superres_capacity")


def train_fair(arch: dict, steps: int, patch: int = 48, rounds: int = 12):
    rng = np.random.default_rng(0)
    vols = train_superres.sources(SHARED.resolve())
    net = build_network(**arch)
    for r in range(rounds):
        pairs = train_superres.round_pairs(vols, rng, patch)
        lr = 1e-3 if r < rounds * 2 // 3 else 3e-4
        report = fine_tune(net, pairs, steps=steps // rounds, lr=lr, seed=r)
    return net, report.final_mse


def train_oracle(arch: dict, steps: int, patch: int = 48):
    _, truth, _ = volumes(SHARED)[0]
    array = np.asarray(truth.array, np.float32)
    lo, hi = intensity_scale(array)
    scaled = (array - lo) / (hi - lo)
    h = float(truth.spacing[2])
    profile = SliceProfile("box", 4 * h, 4 * h)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for phase in range(4):
        deg = degrade_in_plane(scaled, 2, h, profile, h * phase, 3, consistent=True)
        for other, plane in ((0, 1), (1, 0)):
            x = np.transpose(deg.upsampled, (plane, 2, other))
            y = np.transpose(scaled, (plane, 2, other))
            for _ in range(128):
                k = rng.integers(0, x.shape[0])
                u = rng.integers(0, x.shape[1] - patch + 1)
                v = rng.integers(0, x.shape[2] - patch + 1)
                xs.append(x[k, u : u + patch, v : v + patch])
                ys.append(y[k, u : u + patch, v : v + patch])
    pairs = TrainingPairs(np.stack(xs)[:, None], np.stack(ys)[:, None], (0.0, 1.0), (0, 1))
    net = build_network(**arch)
    fine_tune(net, pairs, steps=steps * 2 // 3, lr=1e-3)
    return net, fine_tune(net, pairs, steps=steps // 3, lr=3e-4).final_mse


def score(weights: Path, oracle: bool) -> None:
    for name, truth, axis in volumes(SHARED)[:1] if oracle else volumes(SHARED):
        h = float(truth.spacing[axis])
        stack = simulate_stack(truth, axis, SliceProfile("box", 4 * h, 4 * h), offset=h)
        mask = eval_mask(truth, stack, axis)
        runs = {"bspline": {"method": "bspline"}, "pretrained": {"finetune": False}}
        if not oracle:
            runs["fine-tuned"] = {}
        got = {}
        for method, opts in runs.items():
            if method != "bspline":
                opts = {**opts, "weights": str(weights)}
            out = reconstruct([stack], like=truth, kind="box", **opts).volume.array
            got[method] = psnr(truth.array, out, mask)
        base = got.pop("bspline")
        gains = ", ".join(f"{m} {v - base:+.3f} dB" for m, v in got.items())
        log.info("%s box 4x: B-spline %.3f dB; %s", name, base, gains)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["fair", "oracle"])
    ap.add_argument("out", type=Path, help="folder for the weights")
    ap.add_argument("arch", type=json.loads, help="build_network keywords as JSON")
    ap.add_argument("steps", type=int)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = train_oracle if args.mode == "oracle" else train_fair
    net, mse = train(args.arch, args.steps)
    seconds = time.perf_counter() - t0
    log.info("%s %s: %d steps in %.0f s, MSE %.3g", args.mode, args.arch, args.steps, seconds, mse)
    weights = save_network(net, args.out / f"{args.mode}.pt", args.arch, {"steps": args.steps})
    score(weights, args.mode == "oracle")


if __name__ == "__main__":
    main()
