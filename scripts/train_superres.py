"""Train the shipped super-resolution network (pipelines/superres-2d.pt) from ../shared/data.

Self-supervised, as the fine-tune is: pairs degrade one in-plane axis of a real
volume with a thick-slice profile (box or Gaussian, 2-6x the in-plane spacing,
contiguous or gapped) and ask for the original. Only axial planes (in-plane axes
0 and 1) are used, so the through-plane (z) detail that bench_reconstruct.py
withholds from its axial thick stacks is never seen. Inputs are made consistent
with their thick samples, as inference makes them (superres/consistency.py).
The MR is left out entirely: it is the benchmark's held-out volume.

    python scripts/train_superres.py --steps 3000 -o pipelines/superres-2d.pt
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from medrecon.io import load, load_all
from medrecon.superres.network import build_network, fine_tune
from medrecon.superres.pairs import TrainingPairs, make_pairs
from medrecon.superres.profile import SliceProfile
from medrecon.superres.weights import save_network
from medrecon.volume import Volume

log = logging.getLogger("train_superres")

ARCH = {"channels": 16, "layers": 4}


def sources(shared: Path) -> list[tuple[str, Volume]]:
    """The training volumes: the abdominal CT and the two plain (untilted) head CTs."""
    out = [("ct-abdomen", load(shared / "ct-abdomen" / "ct.nii.gz"))]
    for name in ("ct-philips-axial", "ct-ge-tilt-uneven"):
        folder = shared / "dicom" / name
        if folder.is_dir():
            out.append((name, load_all(folder)[0]))
    return out


def pairs_for(volume: Volume, rng: np.random.Generator, n: int, patch: int) -> TrainingPairs:
    """``n`` pairs from ``volume``'s axial planes with a random profile."""
    h = float(min(volume.spacing[:2]))
    factor = float(rng.uniform(2.0, 6.0))
    kind = str(rng.choice(["box", "gaussian"]))
    thickness = factor * h
    spacing = thickness * float(rng.choice([1.0, 1.0, 1.25, 1.5]))  # some gapped stacks
    profile = SliceProfile(kind, thickness, spacing)
    v = Volume(np.asarray(volume.array, np.float32), volume.affine, volume.meta)
    return make_pairs(
        v, profile, 2, patch=patch, n=n, seed=int(rng.integers(1 << 30)), consistent=True
    )


def round_pairs(vols: list[tuple[str, Volume]], rng: np.random.Generator, patch: int):
    """One round's pairs: 256 from each volume, cropped to their common square side."""
    parts = [pairs_for(v, rng, 256, patch) for _, v in vols]
    side = min(p.inputs.shape[-1] for p in parts)
    return TrainingPairs(
        np.concatenate([p.inputs[..., :side, :side] for p in parts]),
        np.concatenate([p.targets[..., :side, :side] for p in parts]),
        (0.0, 1.0),
        (0, 1),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).parents[1] / "../shared/data")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=12, help="fresh pairs this many times")
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("-o", "--output", type=Path, default=Path("pipelines/superres-2d.pt"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channels", type=int, default=ARCH["channels"])
    ap.add_argument("--layers", type=int, default=ARCH["layers"])
    ap.add_argument(
        "--dilations", type=int, nargs="+", help="one per layer (default 1s; docs/reconstruct.md)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    vols = sources(args.shared.resolve())
    log.info("training volumes: %s", ", ".join(f"{n} {v.shape}" for n, v in vols))
    arch = {"channels": args.channels, "layers": args.layers}
    if args.dilations:
        arch["dilations"] = list(args.dilations)
    net = build_network(**arch)
    t0 = time.perf_counter()
    steps_per_round = max(1, args.steps // args.rounds)
    losses = []
    for r in range(args.rounds):
        pairs = round_pairs(vols, rng, args.patch)
        lr = 1e-3 if r < args.rounds * 2 // 3 else 3e-4
        rep = fine_tune(net, pairs, steps=steps_per_round, lr=lr, seed=args.seed + r)
        losses.append(rep.final_mse)
        log.info("round %d/%d: MSE %.3g (%.0f s)", r + 1, args.rounds, rep.final_mse,
                 time.perf_counter() - t0)  # fmt: skip
    trained = {
        "steps": steps_per_round * args.rounds,
        "seconds": round(time.perf_counter() - t0, 1),
        "device": "cpu",
        "volumes": [n for n, _ in vols],
        "planes": "axial (in-plane axes 0 and 1)",
        "profiles": "box/gaussian, 2-6x in-plane spacing, spacing 1-1.5x thickness",
        "final_mse": losses[-1],
    }
    save_network(net, args.output, arch, trained)
    log.info("wrote %s: %s", args.output, trained)


if __name__ == "__main__":
    main()
