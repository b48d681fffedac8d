"""Cohort events and the progress line: done / failed / remaining and an ETA.

The runner reports each step as a :class:`CohortEvent` to whoever listens
(the progress bar, a test, a notebook). The bar redraws one line on a terminal
and prints one line per finished study elsewhere (a log, a CI job).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from medrecon.cohort.state import StudyRecord

__all__ = ["CohortEvent", "ProgressBar", "format_seconds"]

#: Event kinds, in the order a study meets them.
KINDS = ("skip", "start", "retry", "complete", "failed")


@dataclass(frozen=True)
class CohortEvent:
    """``kind`` of :data:`KINDS` for ``study``; ``worker`` is ``host:pid``."""

    kind: str
    study: str
    attempt: int = 0
    worker: str = ""
    record: StudyRecord | None = None


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


class ProgressBar:
    """Counts events and draws ``[#####-----] 5/10 | 4 done 1 failed 5 left | ETA 1m20s``."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = self.failed = self.skipped = 0
        self._t0 = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.skipped

    def eta(self) -> float | None:
        """Seconds left, from this run's pace (studies skipped as finished do not count)."""
        finished = self.done + self.failed
        if finished == 0:
            return None
        return (time.monotonic() - self._t0) / finished * self.remaining

    def line(self) -> str:
        ended = self.total - self.remaining
        filled = int(self.width * ended / self.total) if self.total else self.width
        eta = self.eta()
        parts = [
            f"[{'#' * filled}{'-' * (self.width - filled)}] {ended}/{self.total}",
            f"{self.done} done {self.failed} failed {self.remaining} left"
            + (f" ({self.skipped} already done)" if self.skipped else ""),
            f"ETA {format_seconds(eta)}" if eta is not None else "ETA --",
        ]
        return " | ".join(parts)

    def __call__(self, event: CohortEvent) -> None:
        if event.kind == "skip":
            self.skipped += 1
        elif event.kind == "complete":
            self.done += 1
        elif event.kind == "failed":
            self.failed += 1
        else:
            return
        if self._tty:
            self.stream.write("\r" + self.line())
            if self.remaining == 0:
                self.stream.write("\n")
        elif event.kind != "skip" or self.remaining == 0:
            self.stream.write(f"{event.study}: {event.kind} | {self.line()}\n")
        self.stream.flush()
