"""medrecon's training iteration vs a plain MONAI training loop, side by side.

Data: the real CT ``../shared/data/ct-abdomen`` (122x101x112 @ 3 mm) with its ten
abdomen-ct organs, prepared once by medrecon (same arrays for both sides). Network:
the abdomen-ct pipeline's residual UNet, seeded, one copy per side. Patch 64^3, batch 2.

  medrecon  the ``medrecon train`` loop: seeded class-balanced patch, one-resampling
            affine + coarse elastic, intensity augmentation, masked Dice+CE, AdamW,
            warm-up/cosine LR, gradient clipping (``loop._loader`` + ``_Run.train_step``)
  monai     the MONAI tutorial way: CacheDataset + DataLoader(shuffle) with
            RandCropByLabelClassesd, RandAffined (same ranges), the same intensity
            transforms, DiceCELoss, AdamW

Two figures per side: ``step`` (network forward/backward/optimiser on a fixed batch)
and ``iteration`` (patch sampling and augmentation included, loader workers 0).
Rounds alternate between the sides; the median of single iterations is printed
with the ratio medrecon/monai of iterations per second (goal >= 0.9).

Run from the repository root::

    python benchmarks/bench_train.py [--rounds 5] [--iterations 4] [--threads 2] [--json out]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
COHORT = REPO / "scripts" / "abdomen-ct.dataset.yaml"
DATA = REPO.parent / "shared" / "data" / "ct-abdomen"
GOAL = 0.9
PATCH = (64, 64, 64)
BATCH = 2


def _medrecon_side(pipeline, train_cases, device, tmp):
    from medrecon.train.augment import AugmentConfig
    from medrecon.train.ddp import DistContext
    from medrecon.train.loop import TrainConfig, _loader, _Run

    # AMP off: the plain loop has none, so both sides do the same float32 work.
    config = TrainConfig(
        epochs=100, iterations_per_epoch=100, patch_size=PATCH, batch_size=BATCH, amp=False
    )
    run = _Run(pipeline, config, DistContext(), device, tmp)
    batches = iter(_loader(train_cases, pipeline, config, AugmentConfig(), DistContext(), 0))
    return run.train_step, lambda: next(batches)


def _monai_side(pipeline, train_cases, device):
    from monai import transforms as mt
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss

    from medrecon.pipeline.model import build_network

    keys = ["image", "label"]
    rot = np.deg2rad(15.0)
    chain = mt.Compose(
        [
            mt.EnsureTyped(keys=keys, track_meta=False),
            mt.SpatialPadd(keys=keys, spatial_size=[p + 16 for p in PATCH]),
            mt.RandCropByLabelClassesd(
                keys=keys,
                label_key="label",
                spatial_size=[p + 16 for p in PATCH],
                num_classes=pipeline.max_label + 1,
                num_samples=1,
                warn=False,
            ),
            mt.RandAffined(
                keys=keys,
                prob=0.9,
                rotate_range=(rot,) * 3,
                scale_range=(0.15,) * 3,
                shear_range=(0.05,) * 6,
                spatial_size=PATCH,
                mode=("bilinear", "nearest"),
                padding_mode="border",
                cache_grid=True,
            ),
            mt.RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.7, 1.5)),
            mt.RandScaleIntensityd(keys="image", prob=0.3, factors=0.15),
            mt.RandShiftIntensityd(keys="image", prob=0.3, offsets=0.1),
            mt.RandGaussianNoised(keys="image", prob=0.2, std=0.04),
            mt.RandGaussianSmoothd(keys="image", prob=0.15),
        ]
    )
    # The plain loop has no ignore label: it trains on the full reference.
    data = [{"image": c.image, "label": c.reference[None]} for c in train_cases]
    loader = DataLoader(CacheDataset(data, chain, progress=False), batch_size=1, shuffle=True)
    torch.manual_seed(0)
    net = build_network(pipeline.network).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

    def step(image, label):
        loss = loss_fn(net(image.to(device)), label.to(device).long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def forever():
        while True:
            yield from loader

    items_iter = forever()

    def batch():
        items = [next(items_iter) for _ in range(BATCH)]
        return (
            torch.cat([i["image"] for i in items]).float(),
            torch.cat([i["label"] for i in items]),
        )

    return step, batch


def _time(fn, n: int) -> list[float]:
    """Seconds of each of ``n`` calls (medians of single calls shrug off the stalls a
    shared machine throws in)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=4, help="per round and side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"bench_train: {DATA} not found (../shared/data next to the repository root)")
    torch.set_num_threads(args.threads)
    from medrecon.pipeline.registry import load_pipeline
    from medrecon.train.dataset import read_cohort
    from medrecon.train.prepare import prepare_cohort

    pipeline = load_pipeline("abdomen-ct", check_weights=False)
    train_cases, _ = prepare_cohort(read_cohort(COHORT), pipeline, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            "medrecon": _medrecon_side(pipeline, train_cases, args.device, Path(tmp)),
            "monai": _monai_side(pipeline, train_cases, args.device),
        }
        fixed = {name: batch() for name, (_, batch) in sides.items()}
        times: dict[str, dict[str, list[float]]] = {n: {"step": [], "iteration": []} for n in sides}
        for name, (step, batch) in sides.items():  # warm-up
            step(*fixed[name])
            step(*batch())
        for _ in range(args.rounds):
            for name, (step, batch) in sides.items():
                times[name]["step"] += _time(lambda s=step, b=fixed[name]: s(*b), args.iterations)
                times[name]["iteration"] += _time(lambda s=step, b=batch: s(*b()), args.iterations)
    result = {
        "device": args.device,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "patch": PATCH,
        "batch": BATCH,
    }
    print(f"bench_train: patch {PATCH}, batch {BATCH}, {args.device}, {args.threads} threads")
    print(f"{'':10s} {'step it/s':>10s} {'iteration it/s':>15s}")
    for name in sides:
        med = {k: statistics.median(v) for k, v in times[name].items()}
        result[name] = {k: 1.0 / v for k, v in med.items()}
        print(f"{name:10s} {1 / med['step']:10.3f} {1 / med['iteration']:15.3f}")
    for kind in ("step", "iteration"):
        ratio = result["medrecon"][kind] / result["monai"][kind]
        result[f"ratio_{kind}"] = ratio
        verdict = "ok" if ratio >= GOAL else "below goal"
        print(f"ratio medrecon/monai {kind}: {ratio:.2f} (goal >= {GOAL}: {verdict})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
