"""The local engine: worker processes on this machine, each holding its models.

Workers are started with the ``spawn`` method (safe with torch and CUDA) and
fed one study at a time over a pipe. The driver watches each worker's pipe and
process sentinel together, so a worker that dies mid-study (segfault, the OOM
killer) turns into a failed attempt of that study and a fresh worker, never a
broken pool. A worker also watches its parent and exits when the driver is
gone, so killing ``medrecon batch`` leaves no orphans writing into OUTDIR.

``workers=0`` runs studies in the calling process (no isolation; for debugging).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from medrecon.cohort.engine import Slot, SlotEngine
from medrecon.cohort.state import StudyRecord
from medrecon.cohort.studies import Study
from medrecon.cohort.worker import StudyWorker, WorkerSpec, worker_name
from medrecon.errors import InferenceError

__all__ = ["InlineEngine", "LocalEngine", "cpu_count"]

logger = logging.getLogger(__name__)


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker when the driver has gone (killed, crashed)."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(1.0)


def _worker_main(conn, spec: WorkerSpec, parent_pid: int) -> None:
    """Body of a worker process: load the model, then one study per message."""
    logging.getLogger().addHandler(logging.NullHandler())  # warnings travel in the records
    # Ctrl-C reaches the whole process group; the driver handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        worker = StudyWorker(spec)
    except Exception as exc:
        conn.send(("init_error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    conn.send(("ready", worker.name, worker.load_seconds))
    while True:
        message = conn.recv()
        if message is None:
            return
        study, attempt = message
        conn.send(("done", worker.process(study, attempt)))


@dataclass
class _ProcessSlot(Slot):
    """A worker process (``handle``) and the driver's end of its pipe."""

    conn: Any = None

    @property
    def process(self):
        return self.handle


def _death(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class LocalEngine(SlotEngine):
    """``workers`` processes, each a :class:`StudyWorker`. A study still running
    after ``study_timeout`` seconds has its worker killed (a hung decoder, a
    stuck file system): that attempt fails like a crash."""

    start_timeout_s = 600.0  # loading torch and a model on a busy machine can take a while

    def __init__(self, spec: WorkerSpec, workers: int, study_timeout: float | None = None) -> None:
        import multiprocessing

        super().__init__(spec, study_timeout)
        self.workers = max(1, workers)
        self._ctx = multiprocessing.get_context("spawn")

    def _new_slot(self) -> _ProcessSlot:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main, args=(child, self.spec, os.getpid()), daemon=True
        )
        process.start()
        child.close()
        return _ProcessSlot(process, conn=parent)

    def start(self, n_studies: int | None = None) -> None:
        self._start_slots(self.workers, "cohort workers")

    def _send(self, slot: _ProcessSlot, study: Study, attempt: int) -> None:
        slot.conn.send((study, attempt))

    def _poll(self, timeout: float) -> list[StudyRecord]:
        from multiprocessing.connection import wait

        handles = {}
        for slot in self._slots:
            handles[slot.conn] = slot
            handles[slot.process.sentinel] = slot
        finished: list[StudyRecord] = []
        for handle in wait(list(handles), timeout):
            slot = handles[handle]
            if slot not in self._slots:
                continue  # already replaced through its other handle
            if handle is slot.conn:
                try:
                    message = slot.conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None:
                    finished.extend(self._message(slot, message))
                    continue
            finished.extend(self._replace(slot))
        return finished

    def _message(self, slot: _ProcessSlot, message) -> list[StudyRecord]:
        kind = message[0]
        if kind == "init_error":
            self.close()
            raise InferenceError(
                f"a cohort worker could not load the pipeline: {message[1]}\n{message[2]}"
            )
        if kind == "ready":
            slot.name, slot.ready = message[1], True
            logger.info("worker %s ready (model loaded in %.1f s)", message[1], message[2])
            return []
        slot.task = None
        return [message[1]]

    def _retire(self, slot: _ProcessSlot, cause: Any, timed_out: bool) -> str:
        if timed_out:
            slot.process.kill()
        slot.process.join(5)
        how = cause or _death(slot.process)
        logger.warning("worker %s died (%s)", slot.name or slot.process.pid, how)
        slot.conn.close()
        return how

    def _lost_error(self, slot: _ProcessSlot, reason: str) -> str:
        return f"worker process {slot.name or slot.process.pid} died ({reason})"

    def _start_error(self, reason: str, cause: Any) -> str:
        return f"cohort workers keep dying while loading the model ({reason})"

    def close(self) -> None:
        """Stop every worker: ask politely, then terminate what is left."""
        for slot in self._slots:
            with contextlib.suppress(OSError, ValueError):  # a dead worker's pipe
                slot.conn.send(None)
        for slot in self._slots:
            slot.process.join(2 if slot.task is None else 0.1)
            if slot.process.is_alive():
                slot.process.terminate()
                slot.process.join(5)
            if slot.process.is_alive():  # pragma: no cover - ignores SIGTERM
                slot.process.kill()
            slot.conn.close()
        self._slots = []


class InlineEngine:
    """Studies one after another in this process (``workers=0``): no start-up, no
    isolation from crashes. Useful for debugging and for tiny cohorts."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self._worker: StudyWorker | None = None
        self._pending: list[tuple[Study, int]] = []

    def start(self, n_studies: int | None = None) -> None:
        self._worker = StudyWorker(self.spec)

    n_workers = 1

    @property
    def idle(self) -> int:
        return 0 if self._pending else 1

    @property
    def busy(self) -> int:
        return len(self._pending)

    def submit(self, study: Study, attempt: int) -> str:
        self._pending.append((study, attempt))
        return worker_name()

    def wait(self, timeout: float) -> list[StudyRecord]:
        assert self._worker is not None, "start() first"
        done = [self._worker.process(study, attempt) for study, attempt in self._pending]
        self._pending = []
        return done

    def close(self) -> None:
        self._worker = None
