"""``train(dataset, pipeline, out_dir, config)``: the training loop behind ``medrecon train``.

Reproducibility without saving every random generator: patch number ``k`` of the
run (counted over all steps and ranks) draws its case and every augmentation from
a generator seeded by ``(seed, k)``. A resumed run, a run with more loader
workers or a DDP run therefore sees exactly the patches an uninterrupted run would.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from medrecon.errors import InputError
from medrecon.pipeline.config import Pipeline
from medrecon.pipeline.device import bf16_supported
from medrecon.train.augment import (
    AugmentConfig,
    ModelSpace,
    build_patch_chain,
    left_right_pairs,
)
from medrecon.train.checkpoint import BEST, LAST, load_checkpoint, plain_state_dict, save_checkpoint
from medrecon.train.ddp import DistContext, barrier, cleanup, mean_across_ranks, setup_distributed
from medrecon.train.prepare import PreparedCase
from medrecon.train.schedule import lr_factor, schedule_changes

__all__ = ["TrainConfig", "TrainResult", "train"]

logger = logging.getLogger(__name__)

MODEL = "model.pt"
PIPELINE = "pipeline.yaml"
LOG = "log.csv"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50
    iterations_per_epoch: int = 50
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (64, 64, 64)
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 2.0
    min_lr: float = 1e-5
    grad_clip: float = 12.0
    #: Validate every N epochs (and after the last); 0 = never.
    val_every: int = 5
    seed: int = 0
    device: str = "auto"
    #: Mixed precision (fp16 on CUDA, bf16 on the CPU: fast where it has AMX); None = CUDA only.
    amp: bool | None = None
    workers: int = 0
    #: torch intra-op threads; None leaves torch's default.
    threads: int | None = None
    #: Weights (a state dict, e.g. a shipped model) to start from instead of random.
    init_weights: str | None = None

    @property
    def total_steps(self) -> int:
        return self.epochs * self.iterations_per_epoch


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int
    best_epoch: int
    best_metric: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def model(self) -> Path:
        return self.out_dir / MODEL


class _Patches:
    """Patch ``k`` of the run: a seeded case choice and augmentation (map-style dataset)."""

    def __init__(self, cache: Any, chain: Any, seed: int) -> None:
        self.cache, self.chain, self.seed = cache, chain, seed

    def __len__(self) -> int:  # the sampler decides which patch numbers are drawn
        return 2**62

    def __getitem__(self, k: int):
        import torch

        rng = np.random.default_rng([self.seed, k])
        item = self.cache[int(rng.integers(len(self.cache)))]
        self.chain.set_random_state(seed=int(rng.integers(2**31)))
        out = self.chain(dict(item))
        out = out[0] if isinstance(out, list) else out
        return out["image"].float(), out["label"].to(dtype=torch.uint8)


def _batches(start: int, total: int, batch: int, ctx: DistContext):
    """Patch numbers of every step from ``start``: rank r of W takes its own block."""
    for step in range(start, total):
        first = (step * ctx.world_size + ctx.rank) * batch
        yield list(range(first, first + batch))


def _loader(train_cases: list[PreparedCase], pipeline: Pipeline, config, augment, ctx, start):
    import torch
    from monai import transforms as mt
    from monai.data import CacheDataset

    num_classes = pipeline.max_label + 1
    big = tuple(p + 2 * augment.margin for p in config.patch_size)
    keys = ["image", "label", "tissue"] if augment.needs_tissue else ["image", "label"]
    cached = mt.Compose(
        [
            # Tensors, not arrays: MONAI's numpy paths resample several times slower.
            mt.EnsureTyped(keys=keys, track_meta=False),
            # Padding 0 is air in the tissue map too (its darkest class).
            mt.SpatialPadd(keys=keys, spatial_size=big, mode="constant"),
            mt.ClassesToIndicesd(keys="label", num_classes=num_classes),
        ]
    )
    data = []
    for c in train_cases:
        item = {"image": c.image, "label": c.label}
        if augment.needs_tissue:
            item["tissue"] = c.tissue
            item["phase_groups"] = c.phase_groups or {}
        data.append(item)
    cache = CacheDataset(data, cached, progress=False, copy_cache=False)
    chain = build_patch_chain(
        augment,
        config.patch_size,
        num_classes,
        left_right_pairs(pipeline),
        ModelSpace.of(pipeline),
    )
    return torch.utils.data.DataLoader(
        _Patches(cache, chain, config.seed),
        batch_sampler=_batches(start, config.total_steps, config.batch_size, ctx),
        num_workers=config.workers,
        persistent_workers=False,
    )


def _write_pipeline(pipeline: Pipeline, out_dir: Path, sha: str) -> None:
    """``pipeline.yaml`` beside ``model.pt``: the training pipeline pointing at it."""
    import yaml

    from medrecon.atomic import atomic_write_text

    if pipeline.source is None:
        return
    data = yaml.safe_load(Path(pipeline.source).read_text())
    data["weights"] = {"path": MODEL, "sha256": sha}
    atomic_write_text(out_dir / PIPELINE, yaml.safe_dump(data, sort_keys=False))


def _log_row(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _load_initial(net: Any, path: Path) -> None:
    """Start from ``path``'s weights; a network of another shape is a clear error."""
    from medrecon.pipeline.config import WeightsSpec
    from medrecon.pipeline.model import read_state_dict

    state = read_state_dict(WeightsSpec(path=path, sha256=None))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"--init {path}: these weights do not fit the pipeline's network ({exc})"
        ) from None
    logger.info("network initialised from %s", path)


class _Run:
    """One training run's mutable state (network, optimiser, counters)."""

    def __init__(self, pipeline, config, ctx, device, out_dir) -> None:
        import torch

        from medrecon.pipeline.model import build_network

        self.config, self.ctx, self.device, self.out_dir = config, ctx, device, out_dir
        torch.manual_seed(config.seed)
        net = build_network(pipeline.network)
        if config.init_weights:
            _load_initial(net, Path(config.init_weights))
        net = net.to(device)
        if ctx.initialized:
            net = torch.nn.parallel.DistributedDataParallel(net)
        self.net = net
        self.opt = torch.optim.AdamW(
            net.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_factor(config))
        self.amp = device.startswith("cuda") if config.amp is None else config.amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and device.startswith("cuda"))
        if self.amp and device == "cpu" and not bf16_supported("cpu"):
            # Emulated bfloat16 is several times slower than float32, not faster.
            logger.warning("--amp on a CPU without native bfloat16 (AMX/AVX512-BF16) is slow")
        self.step, self.epoch, self.best, self.best_epoch = 0, 0, -math.inf, 0
        self.history: list[dict[str, float]] = []

    def state(self) -> dict[str, Any]:
        return {
            "model": plain_state_dict(self.net),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "config": {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        getattr(self.net, "module", self.net).load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.history = list(state["history"])
        changes = schedule_changes(state.get("config", {}), self.config, self.step)
        if changes:
            # LambdaLR recomputes the rate from the step: other settings, another curve.
            logger.warning("resumed with another learning-rate schedule: %s", "; ".join(changes))

    def train_step(self, image, label) -> float:
        import torch

        from medrecon.train.losses import masked_dice_ce

        image, label = image.to(self.device), label.to(self.device)
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(
            kind, dtype=torch.float16 if kind == "cuda" else torch.bfloat16, enabled=self.amp
        ):
            loss = masked_dice_ce(self.net(image), label)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.step += 1
        return float(loss.detach())


def _end_of_epoch(run: _Run, val_cases, pipeline: Pipeline, loss: float, seconds: float) -> dict:
    """Validate when due, write checkpoints (last; best and model.pt when improved), log."""
    from medrecon.pipeline.weights import sha256_file
    from medrecon.train.validate import validate

    config, epoch = run.config, run.epoch
    row: dict[str, float] = {
        "epoch": epoch,
        "step": run.step,
        "train_loss": loss,
        "lr": run.opt.param_groups[0]["lr"],
        "epoch_seconds": seconds,
        "iterations_per_s": config.iterations_per_epoch / max(seconds, 1e-9),
    }
    due = config.val_every > 0 and (epoch % config.val_every == 0 or epoch == config.epochs)
    scores = validate(run.net, val_cases, pipeline, run.device) if due and val_cases else {}
    row["val_mean_dice"] = scores.get("mean", math.nan)
    for lab in pipeline.labels:
        row[f"dice_{lab.name}"] = scores.get(lab.name, math.nan)
    # Without validation the latest weights are the ones to ship.
    metric = scores.get("mean", math.nan) if val_cases and config.val_every > 0 else float(epoch)
    improved = not math.isnan(metric) and metric > run.best
    if improved:
        run.best, run.best_epoch = metric, epoch
    run.history.append(row)
    state = run.state()
    save_checkpoint(run.out_dir / LAST, state)
    if improved:
        save_checkpoint(run.out_dir / BEST, state)
        save_checkpoint(run.out_dir / MODEL, state["model"])
        _write_pipeline(pipeline, run.out_dir, sha256_file(run.out_dir / MODEL))
    _log_row(run.out_dir / LOG, row)
    if scores:
        logger.info(
            "epoch %d: loss %.4f, validation mean Dice %.3f (%s)",
            epoch,
            loss,
            row["val_mean_dice"],
            ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if k != "mean"),
        )
    else:
        logger.info("epoch %d: loss %.4f (%.1f s)", epoch, loss, seconds)
    return row


def train(
    dataset: str | Path,
    pipeline: str | Path | Pipeline,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: TextIO | None = None,
) -> TrainResult:
    """Train ``pipeline``'s network on ``dataset`` and write ``out_dir``:
    ``model.pt`` (best weights, plain state dict), ``pipeline.yaml`` (the pipeline
    pointing at them, SHA-256 pinned), ``checkpoint_last.pt``/``checkpoint_best.pt``
    (full training state for ``resume``) and ``log.csv``. ``stop_after`` ends this
    call after that many epochs (the schedule still spans ``config.epochs``), for
    training in slices on a shared machine.

    Every case is read and checked before the first step, so a bad pair fails fast.
    """
    import torch

    from medrecon.pipeline.device import resolve_device
    from medrecon.pipeline.registry import load_pipeline
    from medrecon.train.dataset import read_cohort
    from medrecon.train.prepare import prepare_cohort

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    pipeline = load_pipeline(pipeline, check_weights=False)
    cohort = read_cohort(dataset)
    augment = AugmentConfig.from_mapping(cohort.augment, f"{cohort.source} augment")
    if any(p % 16 for p in config.patch_size):
        logger.warning("patch %s is not a multiple of 16; U-Nets may refuse it", config.patch_size)
    ctx, device = setup_distributed(resolve_device(config.device).device)
    try:
        if ctx.is_main:
            if not resume and (out_dir / LAST).exists():
                raise InputError(f"{out_dir} holds a training run; pass --resume or a new folder")
            out_dir.mkdir(parents=True, exist_ok=True)
        clusters = augment.synth_clusters if augment.needs_tissue else 0
        train_cases, val_cases = prepare_cohort(
            cohort, pipeline, config.seed, tissue_clusters=clusters
        )
        run = _Run(pipeline, config, ctx, device, out_dir)
        if resume:
            run.restore(load_checkpoint(out_dir / LAST))
            logger.info("resumed at epoch %d (step %d)", run.epoch, run.step)
        stop = config.epochs if stop_after is None else min(config.epochs, run.epoch + stop_after)
        _fit(run, train_cases, val_cases, pipeline, augment, progress, stop)
        validated = bool(val_cases) and config.val_every > 0
        best = run.best if validated else math.nan  # without validation: the last epoch
        return TrainResult(out_dir, run.epoch, run.best_epoch, best, run.history)
    finally:
        cleanup(ctx)


def _fit(run: _Run, train_cases, val_cases, pipeline, augment, progress, stop: int) -> None:
    from medrecon.train.progress import Progress

    config, ctx = run.config, run.ctx
    loader = iter(_loader(train_cases, pipeline, config, augment, ctx, run.step))
    bar = Progress(config.total_steps, run.step, progress if ctx.is_main else None)
    while run.epoch < stop:
        t0, losses = time.perf_counter(), []
        for _ in range(config.iterations_per_epoch):
            image, label = next(loader)
            losses.append(run.train_step(image, label))
            bar.update(run.step, run.epoch + 1, config.epochs, float(np.mean(losses)))
        run.epoch += 1
        loss = mean_across_ranks(ctx, float(np.mean(losses)))
        if ctx.is_main:
            _end_of_epoch(run, val_cases, pipeline, loss, time.perf_counter() - t0)
        barrier(ctx)
    bar.close()
