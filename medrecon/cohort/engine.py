"""What both cohort engines share: worker slots, hand-out, timeouts, replacement.

:class:`SlotEngine` keeps one :class:`Slot` per worker (a process for the local
engine, an actor for Ray) and does the bookkeeping the driver relies on: which
workers are idle or busy, handing a study to an idle one, killing a study's
worker when it runs past the timeout, and replacing a worker that was lost, with
the failed record of the study it held, so one bad study never stops the rest.
A subclass says how to start, reach, poll and stop its kind of worker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from medrecon.cohort.state import StudyRecord, lost_attempt
from medrecon.cohort.studies import Study
from medrecon.cohort.worker import WorkerSpec
from medrecon.errors import InferenceError

__all__ = ["Slot", "SlotEngine"]

logger = logging.getLogger(__name__)

#: A worker lost this many times before it was ever ready stops the cohort.
_MAX_START_FAILURES = 3


@dataclass
class Slot:
    """One worker as the driver sees it; ``handle`` is the engine's own (a process and
    its pipe, an actor and its pending result)."""

    handle: Any
    name: str = ""
    ready: bool = False
    task: tuple[Study, int] | None = None
    started: float = field(default_factory=time.perf_counter)


class SlotEngine:
    """The engine interface ``run_cohort`` drives (``start``, ``idle``, ``busy``,
    ``submit``, ``wait``, ``close``, ``n_workers``) over a list of slots.

    Subclasses set :attr:`start_timeout_s` and implement :meth:`start` (with
    :meth:`_start_slots`), :meth:`_new_slot`, :meth:`_send`, :meth:`_poll` (the
    records of attempts that ended; marks slots ready), :meth:`_retire` (stop what
    is left of a lost worker), :meth:`_lost_error`, :meth:`_start_error` and
    :meth:`close`; :meth:`_hopeless` where a first loss should stop the cohort.
    """

    #: Seconds every worker has to become ready in :meth:`start`.
    start_timeout_s: float = 600.0

    def __init__(self, spec: WorkerSpec, study_timeout: float | None = None) -> None:
        self.spec = spec
        self.study_timeout = study_timeout
        self._slots: list[Slot] = []
        self._start_failures = 0

    # -- what a subclass provides --------------------------------------------------------

    def _new_slot(self) -> Slot:  # pragma: no cover - abstract
        raise NotImplementedError

    def _send(self, slot: Slot, study: Study, attempt: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def _poll(self, timeout: float) -> list[StudyRecord]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _retire(self, slot: Slot, cause: Any, timed_out: bool) -> str:  # pragma: no cover
        """Stop what is left of the lost worker in ``slot``; the reason, for messages."""
        raise NotImplementedError

    def _lost_error(self, slot: Slot, reason: str) -> str:  # pragma: no cover - abstract
        """The error of the attempt a lost worker held."""
        raise NotImplementedError

    def _start_error(self, reason: str, cause: Any) -> str:  # pragma: no cover - abstract
        """The error that stops the cohort when workers keep dying before they are ready."""
        raise NotImplementedError

    def _hopeless(self) -> bool:
        """Stop at the first worker lost while starting, not after a few (default no)."""
        return False

    def start(self, n_studies: int | None = None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the bookkeeping, written once -----------------------------------------------

    def _start_slots(self, n: int, what: str) -> None:
        """Start ``n`` workers and wait until every one is ready."""
        self._slots = [self._new_slot() for _ in range(n)]
        deadline = time.monotonic() + self.start_timeout_s
        while not all(s.ready for s in self._slots):
            if time.monotonic() > deadline:
                minutes = f"{self.start_timeout_s / 60:g}"
                raise InferenceError(f"{what} did not start within {minutes} minutes")
            self._poll(1.0)

    @property
    def n_workers(self) -> int:
        return len(self._slots)

    @property
    def idle(self) -> int:
        return sum(1 for s in self._slots if s.ready and s.task is None)

    @property
    def busy(self) -> int:
        return sum(1 for s in self._slots if s.task is not None)

    def submit(self, study: Study, attempt: int) -> str:
        """Hand ``study`` to an idle worker; returns the worker's ``host:pid``."""
        slot = next(s for s in self._slots if s.ready and s.task is None)
        slot.task = (study, attempt)
        slot.started = time.perf_counter()
        self._send(slot, study, attempt)
        return slot.name

    def wait(self, timeout: float) -> list[StudyRecord]:
        """Records of the attempts that ended within ``timeout`` seconds."""
        return self._poll(timeout) + self._expire()

    def _expire(self) -> list[StudyRecord]:
        """Kill the workers whose study ran past ``study_timeout``; those attempts fail."""
        if self.study_timeout is None:
            return []
        now, out = time.perf_counter(), []
        for slot in list(self._slots):
            if slot.task is not None and now - slot.started > self.study_timeout:
                reason = f"timed out after {self.study_timeout:g} s"
                out.extend(self._replace(slot, reason, timed_out=True))
        return out

    def _replace(self, slot: Slot, cause: Any = None, timed_out: bool = False) -> list[StudyRecord]:
        """A worker was lost: its study's attempt failed; start a new worker in its place.
        A worker that keeps dying before it is ready (a model that cannot load) stops
        the cohort instead."""
        reason = self._retire(slot, cause, timed_out)
        if not slot.ready:
            self._start_failures += 1
            if self._start_failures > _MAX_START_FAILURES or self._hopeless():
                self.close()
                raise InferenceError(self._start_error(reason, cause))
        self._slots[self._slots.index(slot)] = self._new_slot()
        return lost_attempt(slot.task, slot.name, slot.started, self._lost_error(slot, reason))
