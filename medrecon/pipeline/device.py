"""Choose where inference runs and with what precision."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from medrecon.errors import InputError

__all__ = ["DeviceChoice", "bf16_supported", "resolve_device"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    """A torch device and the autocast dtype to use there (None = full precision)."""

    device: str
    amp_dtype: str | None

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def bf16_supported(device: str) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (CPUs with AVX512-BF16/AMX)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_device(requested: str = "auto", *, amp: bool | None = None) -> DeviceChoice:
    """``auto`` picks CUDA, then MPS, then CPU. ``amp`` None means on for CUDA only.

    On CUDA, AMP uses bfloat16 where the GPU supports it (no overflow risk, no
    scaler needed) and float16 otherwise.
    """
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif _mps_available():
            requested = "mps"
        else:
            requested = "cpu"
    kind = requested.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {requested!r} asked for, but CUDA is not available here; "
            "use --device cpu or auto"
        )
    if kind == "mps" and not _mps_available():
        raise InputError(f"device {requested!r} asked for, but MPS is not available here")
    if kind not in ("cuda", "mps", "cpu"):
        raise InputError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps")
    use_amp = (kind == "cuda") if amp is None else bool(amp)
    amp_dtype = None
    if use_amp and kind == "cuda":
        amp_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    elif use_amp and kind == "cpu":
        amp_dtype = "bfloat16"
    elif use_amp:
        amp_dtype = "float16"
    return DeviceChoice(device=requested, amp_dtype=amp_dtype)
