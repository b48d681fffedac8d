"""Header values checked as they are read: a value that cannot describe a slice
makes the file a :class:`SkipFile` with the reason, never another exception."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SkipFile", "floats", "opt_float", "opt_int", "pixel_spacing", "plane_orientation"]


class SkipFile(Exception):
    """Raised for a file that is readable but is not an image slice; carries the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def floats(value: Any, n: int, what: str, path: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise SkipFile(f"unreadable {what} ({value!r})") from exc
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise SkipFile(f"invalid {what} ({value!r})")
    return out


def plane_orientation(value: Any, path: str) -> tuple[float, ...]:
    iop = floats(value, 6, "ImageOrientationPatient", path)
    row, col = iop[:3], iop[3:]
    norms = (math.sqrt(sum(v * v for v in row)), math.sqrt(sum(v * v for v in col)))
    # Cosines must span a plane (nearly orthogonal); zero or parallel vectors give no normal.
    if min(norms) < 1e-6 or abs(sum(a * b for a, b in zip(row, col))) > 0.1 * norms[0] * norms[1]:
        raise SkipFile(f"invalid ImageOrientationPatient ({value!r}): no orthogonal cosines")
    return iop


def pixel_spacing(value: Any, path: str) -> tuple[float, ...]:
    spacing = floats(value, 2, "PixelSpacing", path)
    if min(spacing) <= 0:
        raise SkipFile(f"invalid PixelSpacing ({value!r}): must be positive")
    return spacing


def opt_float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def opt_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
