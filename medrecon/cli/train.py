"""``medrecon train DATASET -o MODELDIR --pipeline NAME_OR_YAML``: train a pipeline's network.

DATASET is an nnU-Net-style folder or a JSON/YAML/CSV case list (see
docs/training.md). MODELDIR receives ``model.pt`` and a ``pipeline.yaml`` that
uses it, checkpoints for ``--resume`` and ``log.csv``. Multi-process:
``torchrun --nproc_per_node=N -m medrecon.cli.train ...``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence

from medrecon.errors import InputError

__all__ = ["add_parser", "main", "run"]

logger = logging.getLogger(__name__)


def _triple(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",") if p]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"patch size {text!r}: give N or X,Y,Z (each >= 8)")
    return tuple(parts)  # type: ignore[return-value]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from medrecon.train.loop import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a pipeline's network on a labelled dataset")
    p.add_argument("dataset", help="nnU-Net folder, or a .json/.yaml/.csv list of image/label")
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    p.add_argument("--pipeline", required=True, help="shipped pipeline name or YAML file")
    p.add_argument("--epochs", type=int, default=d.epochs, help="default %(default)s")
    p.add_argument(
        "--iterations", type=int, default=d.iterations_per_epoch, help="per epoch (%(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--patch", type=_triple, default=d.patch_size, help="N or X,Y,Z voxels")
    p.add_argument("--lr", type=float, default=d.lr, help="peak AdamW rate (%(default)s)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--val-every", type=int, default=d.val_every, help="epochs; 0 = never")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    amp = p.add_mutually_exclusive_group()
    amp.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    amp.add_argument(
        "--amp", action="store_true", help="bfloat16 autocast on the CPU too (fast with AMX)"
    )
    p.add_argument("--workers", type=int, default=d.workers, help="patch loader processes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--init", default=None, help="start from these weights (a state dict .pt) instead of random"
    )
    p.add_argument("--resume", action="store_true", help="continue MODELDIR's last checkpoint")
    p.add_argument(
        "--stop-after", type=int, default=None, help="end after N epochs; continue with --resume"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from medrecon.train.loop import TrainConfig, train

    if args.epochs < 1 or args.iterations < 1 or args.batch_size < 1:
        raise InputError("--epochs, --iterations and --batch-size must be at least 1")
    config = TrainConfig(
        epochs=args.epochs,
        iterations_per_epoch=args.iterations,
        batch_size=args.batch_size,
        patch_size=args.patch,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        val_every=args.val_every,
        seed=args.seed,
        device=args.device,
        amp=True if args.amp else False if args.no_amp else None,
        workers=args.workers,
        threads=args.threads,
        init_weights=args.init,
    )
    result = train(
        args.dataset,
        args.pipeline,
        args.output,
        config,
        resume=args.resume,
        stop_after=args.stop_after,
        progress=None if args.no_progress else sys.stderr,
    )
    if math.isnan(result.best_metric):
        chosen = "no validation, so the model is the last epoch's"
    else:
        chosen = f"best epoch {result.best_epoch} (validation mean Dice {result.best_metric:.3f})"
    print(f"{result.out_dir}: {result.epochs_done} epochs; {chosen}; model {result.model}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["train", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":  # torchrun -m medrecon.cli.train ...
    sys.exit(main())
