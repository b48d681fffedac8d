"""A one-line progress bar (loss, speed, ETA) for a terminal, or periodic lines
for a log file."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Iterations ``start..total``; ``stream`` None draws nothing."""

    def __init__(self, total: int, start: int, stream: TextIO | None, every_s: float = 30.0):
        self.total, self.start, self.stream, self.every_s = total, start, stream, every_s
        self.t0 = time.perf_counter()
        self.last_line = 0.0
        self.tty = bool(stream is not None and stream.isatty())

    def update(self, step: int, epoch: int, epochs: int, loss: float) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        done = step - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        filled = int(30 * step / max(self.total, 1))
        text = (
            f"epoch {epoch}/{epochs} [{'#' * filled}{'.' * (30 - filled)}] {step}/{self.total} "
            f"loss {loss:.4f} {rate:.2f} it/s ETA {_clock(eta)}"
        )
        if self.tty:
            self.stream.write("\r" + text)
            self.stream.flush()
        elif now - self.last_line >= self.every_s or step == self.total:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_line = now

    def close(self) -> None:
        if self.tty and self.stream is not None:
            self.stream.write("\n")
