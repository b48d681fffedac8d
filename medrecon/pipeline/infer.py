"""Sliding-window inference with Gaussian blending, test-time flips, AMP on
CUDA, and a fallback ladder when the GPU runs out of memory.

The ladder, tried in order until one attempt fits: the pipeline's window batch
on the GPU; one window at a time; windows on the GPU but the stitched output
on the CPU; everything on the CPU. Each step down is logged as a warning and
recorded, never raised, unless every attempt fails.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from medrecon.errors import InferenceError
from medrecon.pipeline.config import InferenceSpec
from medrecon.pipeline.device import DeviceChoice

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = [
    "Attempt",
    "count_windows",
    "is_out_of_memory",
    "plan_attempts",
    "predict_probabilities",
    "run_ladder",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """Where the network runs (``device``), where windows are stitched
    (``stitch_device``) and how many windows go through it at once."""

    device: str
    stitch_device: str
    sw_batch_size: int
    amp_dtype: str | None

    def describe(self) -> str:
        amp = f", AMP {self.amp_dtype}" if self.amp_dtype else ""
        return (
            f"network on {self.device}, stitching on {self.stitch_device}, "
            f"{self.sw_batch_size} window(s) per batch{amp}"
        )


def plan_attempts(choice: DeviceChoice, sw_batch_size: int) -> list[Attempt]:
    """The fallback ladder for a device (first entry = the preferred setting)."""
    dev, amp = choice.device, choice.amp_dtype
    attempts = [Attempt(dev, dev, sw_batch_size, amp)]
    if sw_batch_size > 1:
        attempts.append(Attempt(dev, dev, 1, amp))
    if dev != "cpu":
        attempts.append(Attempt(dev, "cpu", 1, amp))
        # Full CPU: half precision is slow there, so AMP goes off.
        attempts.append(Attempt("cpu", "cpu", sw_batch_size, None))
    return attempts


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/host out-of-memory errors (torch reports some as RuntimeError)."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom_type | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _release_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_ladder(
    attempts: list[Attempt], run: Callable[[Attempt], T], warnings: list[str] | None = None
) -> tuple[T, Attempt]:
    """Call ``run`` with each attempt until one does not run out of memory."""
    last: BaseException | None = None
    for i, attempt in enumerate(attempts):
        try:
            return run(attempt), attempt
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            last = exc
            _release_memory(attempt.device)
            if i + 1 < len(attempts):
                message = (
                    f"out of memory with {attempt.describe()}; "
                    f"retrying with {attempts[i + 1].describe()}"
                )
                logger.warning(message)
                if warnings is not None:
                    warnings.append(message)
    tried = "; ".join(a.describe() for a in attempts)
    raise InferenceError(
        f"inference ran out of memory in every setting tried ({tried}): {last}. "
        "Free memory, use a smaller inference.roi_size, or a coarser spacing."
    ) from last


@contextlib.contextmanager
def _cuda_tuning(device: str) -> Iterator[None]:
    """cuDNN autotuning for the fixed window shape, restored afterwards."""
    import torch

    if not device.startswith("cuda"):
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _first_tensor(output: Any) -> torch.Tensor:
    # Some networks (deep supervision, bundles) return a list/tuple/dict; the
    # full-resolution prediction comes first.
    if isinstance(output, list | tuple):
        return output[0]
    if isinstance(output, dict):
        return next(iter(output.values()))
    return output


def _to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    import torch

    if logits.shape[1] == 1:  # one sigmoid channel: foreground vs background
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def _swapped(channels: int, pairs) -> list[int]:
    """Channel order with each (left, right) pair exchanged."""
    order = list(range(channels))
    for a, b in pairs:
        if a < channels and b < channels:
            order[a], order[b] = b, a
    return order


def count_windows(image_size, roi_size, overlap) -> int:
    """Windows MONAI's ``sliding_window_inference`` cuts from one image: per axis one
    when the image fits the window, else enough steps of ``int(roi * (1 - overlap))``
    (at least 1) to reach the end; the image is first padded up to the window."""
    n = 1
    overlaps = overlap if isinstance(overlap, list | tuple) else [overlap] * len(image_size)
    for size, roi, o in zip(image_size, roi_size, overlaps):
        roi = size if roi is None or roi <= 0 else roi  # MONAI's fall_back_tuple
        size = max(size, roi)
        if size == roi:
            continue
        step = max(int(roi * (1 - o)), 1)
        n *= -(-(size - roi) // step) + 1
    return n


def _one_attempt(
    net, image, spec: InferenceSpec, attempt: Attempt, what: str = "windows"
) -> torch.Tensor:
    import torch
    from monai.inferers import sliding_window_inference

    from medrecon.progress import update

    device = torch.device(attempt.device)
    net.to(device)
    # The input lives where the windows are stitched; windows travel to the network.
    x = image.to(attempt.stitch_device)
    cval = float(x.min())  # pad like background, not like mid-grey

    flips: list[tuple[int, ...]] = [(), *spec.tta_flips]
    total_windows = count_windows(x.shape[2:], spec.roi_size, spec.overlap) * len(flips)
    done = [0]

    def predictor(window: torch.Tensor) -> torch.Tensor:
        out = _first_tensor(net(window))
        done[0] += window.shape[0]  # one call per batch of windows
        update(what, done[0], total_windows)
        return out

    total = None
    autocast = (
        torch.autocast(device_type=device.type, dtype=getattr(torch, attempt.amp_dtype))
        if attempt.amp_dtype
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast, _cuda_tuning(attempt.device):
        for flip in flips:
            dims = [2 + a for a in flip]
            inp = torch.flip(x, dims) if dims else x
            logits = sliding_window_inference(
                inp,
                roi_size=spec.roi_size,
                sw_batch_size=attempt.sw_batch_size,
                predictor=predictor,
                overlap=spec.overlap,
                mode=spec.blend,
                sigma_scale=spec.sigma_scale,
                padding_mode="constant",
                cval=cval,
                sw_device=device,
                device=torch.device(attempt.stitch_device),
            )
            logits = _first_tensor(logits).float()
            if dims:
                logits = torch.flip(logits, dims)
            if spec.left_right_pairs and spec.left_right_axis in flip:
                logits = logits[:, _swapped(logits.shape[1], spec.left_right_pairs)]
            probs = _to_probabilities(logits)
            total = probs if total is None else total.add_(probs)
            del logits
        if len(flips) > 1:
            total /= len(flips)
        # A normal tensor (not an inference tensor), so callers may change it. It stays
        # where it was stitched: on a GPU the way back to the native grid runs there too.
        return total[0].clone()


def predict_probabilities(
    net: torch.nn.Module,
    image: torch.Tensor,
    spec: InferenceSpec,
    choice: DeviceChoice,
    warnings: list[str] | None = None,
    what: str = "windows",
) -> tuple[torch.Tensor, Attempt]:
    """Class probabilities (C, X, Y, Z) float32 for a (1, 1, X, Y, Z) input, on the
    device the windows were stitched on. Windows done / total (TTA passes included)
    go to :func:`medrecon.progress.update` as ``what``."""
    attempts = plan_attempts(choice, spec.sw_batch_size)
    return run_ladder(attempts, lambda a: _one_attempt(net, image, spec, a, what), warnings)
