"""Multi-process training with ``torchrun``: one process per GPU (NCCL) or CPU
processes (gloo). Without torchrun's environment, training runs in one process.

Each rank draws different patches (see :mod:`medrecon.train.loop`); gradients are
averaged by DistributedDataParallel; rank 0 alone validates and writes files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

__all__ = ["DistContext", "barrier", "cleanup", "mean_across_ranks", "setup_distributed"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> tuple[DistContext, str]:
    """Join torchrun's process group when its environment is set; returns the
    context and this rank's device (``cuda:<local rank>`` on GPUs)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistContext(), device
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    logger.info("rank %d of %d on %s", rank, world, device)
    return DistContext(rank, world, local, True), device


def barrier(ctx: DistContext) -> None:
    if ctx.initialized:
        import torch.distributed as dist

        dist.barrier()


def mean_across_ranks(ctx: DistContext, value: float) -> float:
    if not ctx.initialized or ctx.world_size == 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def cleanup(ctx: DistContext) -> None:
    if ctx.initialized:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
