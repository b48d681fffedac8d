"""Progress inside long stages: headers read, windows segmented, done / total.

Code deep in a stage calls :func:`update` (a no-op unless someone listens); a
stage's listener is set for its duration by :func:`stage_scope`, which
:func:`medrecon.study.runner.run_study` enters around each stage with its ``progress``
callback. :class:`StageProgress` is the listener ``medrecon run`` prints to
stderr: a stage's start, its steps at most every few seconds (a fast stage shows
only its time), and the stage's time when it ends. Nothing listens in a cohort's
workers, so a cohort's log gets no step lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO, TypeVar

__all__ = ["StageProgress", "counted", "stage_scope", "update"]

T = TypeVar("T")

_listener: ContextVar[Any] = ContextVar("medrecon_progress", default=None)


def update(what: str, done: int, total: int) -> None:
    """Report ``done`` of ``total`` ``what`` (e.g. ``"windows"``) to the stage's listener."""
    listener = _listener.get()
    if listener is not None:
        listener.update(what, done, total)


def counted(items: Iterable[T], what: str, total: int) -> Iterator[T]:
    """``items`` unchanged; each one the consumer is done with is reported to :func:`update`."""
    for n, item in enumerate(items, 1):
        yield item
        update(what, n, total)


@contextmanager
def stage_scope(progress: Any, name: str) -> Iterator[None]:
    """Route :func:`update` calls made during the stage ``name`` to ``progress``
    when it has ``start``/``update`` methods (a plain ``(stage, seconds)`` callback
    only hears of finished stages)."""
    if progress is None or not hasattr(progress, "update"):
        yield
        return
    if hasattr(progress, "start"):
        progress.start(name)
    token = _listener.set(progress)
    try:
        yield
    finally:
        _listener.reset(token)


class StageProgress:
    """Prints each stage and its steps to ``stream`` (default: ``sys.stderr`` when written).

    On a terminal the step line redraws in place (at most ``redraw_s`` apart); to
    a file or pipe a step line is written at most every ``every_s`` seconds, the
    first only once a stage has run that long, and the last count when the stage
    ends. Called as ``progress(stage, seconds)`` when a stage ends.
    """

    def __init__(
        self, stream: TextIO | None = None, *, every_s: float = 5.0, redraw_s: float = 0.25
    ) -> None:
        self._stream = stream
        self._every_s, self._redraw_s = every_s, redraw_s
        self._stage = ""
        self._last = 0.0
        self._pending: str | None = None  # newest step not written (files only)
        self._steps = False  # a step line was written in this stage
        self._drawn = False  # a redrawn line is on screen (terminal only)

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def start(self, stage: str) -> None:
        self._stage = stage
        self._last = time.perf_counter()  # the first step line waits every_s
        self._pending, self._steps = None, False

    def update(self, what: str, done: int, total: int) -> None:
        pct = 100.0 * done / total if total else 100.0
        text = f"  {self._stage:<12} {what} {done}/{total} ({pct:.0f}%)"
        now = time.perf_counter()
        if now - self._last < (self._redraw_s if self.tty else self._every_s):
            self._pending = text
            return
        self._last, self._pending, self._steps = now, None, True
        self._write(text)

    def _write(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, stage: str, seconds: float) -> None:
        if self._steps and self._pending is not None and not self.tty:
            self.stream.write(self._pending + "\n")  # the final count of a long stage
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
        self._pending, self._steps = None, False
        self.stream.write(f"  {stage:<12} {seconds:7.2f} s\n")
        self.stream.flush()
