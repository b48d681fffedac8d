"""The Ray engine: one actor per worker, each holding its loaded models.

Actors ask Ray for ``num_cpus`` CPUs and a fraction of a GPU
(``gpus_per_study``): with 0.5, two actors share a GPU, so one study's CPU
stages (reading DICOM, meshes, DICOM SEG) overlap another's inference. Each
actor reads its study from the input path and writes ``OUTDIR/<study>`` itself;
only paths and small records travel through Ray, so a cluster needs nothing
shared beyond the input and output folders (and the pipeline file, when it is
not a shipped one). An actor that dies (a killed worker, a lost node, the OOM
killer) fails that attempt; the engine starts a replacement and the runner
re-queues the study.

Ray is imported only here, inside functions: it is the optional extra
``medrecon[ray]``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from medrecon.cohort.state import StudyRecord, lost_attempt
from medrecon.cohort.studies import Study
from medrecon.cohort.worker import StudyWorker, WorkerSpec
from medrecon.errors import InferenceError, InputError

__all__ = ["RayEngine", "StudyActor"]

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 900.0


class StudyActor:
    """The actor class (wrapped by ``ray.remote`` at run time)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.worker = StudyWorker(spec)

    def info(self) -> tuple[str, float]:
        return self.worker.name, self.worker.load_seconds

    def process(self, study: Study, attempt: int) -> StudyRecord:
        return self.worker.process(study, attempt)


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise InputError(
            "--engine ray needs Ray: pip install 'medrecon[ray]' (or 'ray>=2.9')"
        ) from exc
    return ray


@dataclass
class _Actor:
    handle: Any
    ready_ref: Any
    name: str = ""
    ready: bool = False
    task: tuple[Study, int] | None = None
    task_ref: Any = None
    started: float = field(default_factory=time.perf_counter)


class RayEngine:
    """``workers`` actors on a Ray cluster (a local one unless ``address`` is given).

    ``workers=None`` fills the cluster: one actor per ``gpus_per_study`` GPU
    share when that is set, else one per ``cpus_per_worker`` CPUs.
    ``gpus_per_study=None`` means 0.5 when the cluster has GPUs, else 0.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        workers: int | None = None,
        address: str | None = None,
        gpus_per_study: float | None = None,
        cpus_per_worker: float = 1.0,
        study_timeout: float | None = None,
    ) -> None:
        self.spec = spec
        self.study_timeout = study_timeout
        self.address = address
        self.requested = workers
        self.gpus_per_study = gpus_per_study
        self.cpus_per_worker = cpus_per_worker
        self._actors: list[_Actor] = []
        self._owns_ray = False
        self._start_failures = 0
        self._actor_cls = None

    def _plan(self, ray, n_studies: int) -> int:
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        if self.gpus_per_study is None:
            self.gpus_per_study = 0.5 if gpus >= 1 else 0.0
        if self.gpus_per_study > 0 and gpus < self.gpus_per_study:
            raise InputError(
                f"--gpus-per-study {self.gpus_per_study} but the Ray cluster has {gpus:g} GPU(s)"
            )
        if self.requested:
            n = self.requested
        elif self.gpus_per_study > 0:
            n = int(gpus / self.gpus_per_study)
        else:
            n = int(float(resources.get("CPU", 1.0)) / self.cpus_per_worker)
        return max(1, min(n, max(1, n_studies)))

    def start(self, n_studies: int | None = None) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"include_dashboard": False}
            ray.init(**kwargs)
            self._owns_ray = True
        n = self._plan(ray, n_studies or 1)
        threads = max(1, int(self.cpus_per_worker))
        self.spec = replace(self.spec, threads=self.spec.threads or threads)
        self._actor_cls = ray.remote(StudyActor).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_study,
            max_restarts=0,  # the engine replaces a dead actor itself, and counts the attempt
            max_task_retries=0,
        )
        logger.info(
            "Ray: %d actor(s), %g CPU and %g GPU each", n, self.cpus_per_worker, self.gpus_per_study
        )
        self._actors = [self._new_actor() for _ in range(n)]
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not all(a.ready for a in self._actors):
            if time.monotonic() > deadline:
                raise InferenceError("Ray actors did not start within 15 minutes")
            self._poll(1.0)

    def _new_actor(self) -> _Actor:
        handle = self._actor_cls.remote(self.spec)
        return _Actor(handle, handle.info.remote())

    @property
    def n_workers(self) -> int:
        return len(self._actors)

    @property
    def idle(self) -> int:
        return sum(1 for a in self._actors if a.ready and a.task is None)

    @property
    def busy(self) -> int:
        return sum(1 for a in self._actors if a.task is not None)

    def submit(self, study: Study, attempt: int) -> str:
        actor = next(a for a in self._actors if a.ready and a.task is None)
        actor.task = (study, attempt)
        actor.started = time.perf_counter()
        actor.task_ref = actor.handle.process.remote(study, attempt)
        return actor.name

    def wait(self, timeout: float) -> list[StudyRecord]:
        return self._poll(timeout) + self._expire()

    def _expire(self) -> list[StudyRecord]:
        """Kill the actors whose study ran past ``study_timeout``; those attempts fail."""
        if self.study_timeout is None:
            return []
        now, out = time.perf_counter(), []
        for actor in list(self._actors):
            if actor.task is not None and now - actor.started > self.study_timeout:
                out.extend(self._replace(actor, f"timed out after {self.study_timeout:g} s"))
        return out

    def _poll(self, timeout: float) -> list[StudyRecord]:
        ray = _import_ray()
        refs = {}
        for actor in self._actors:
            ref = actor.task_ref if actor.ready else actor.ready_ref
            if ref is not None:
                refs[ref] = actor
        if not refs:
            return []
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        finished = []
        for ref in done:
            actor = refs[ref]
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as exc:
                finished.extend(self._replace(actor, exc))
                continue
            if actor.ready:
                actor.task, actor.task_ref = None, None
                finished.append(value)
            else:
                actor.name, actor.ready = value[0], True
                logger.info("actor %s ready (model loaded in %.1f s)", value[0], value[1])
        return finished

    def _replace(self, actor: _Actor, exc: Exception | str) -> list[StudyRecord]:
        ray = _import_ray()
        if isinstance(exc, str):
            reason = exc
        else:
            text = str(exc).strip()
            reason = f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"
        logger.warning("Ray actor %s failed: %s", actor.name or "(starting)", reason)
        ray.kill(actor.handle, no_restart=True)
        if not actor.ready:
            self._start_failures += 1
            if self._start_failures > 3 or not any(a.ready for a in self._actors):
                self.close()
                raise InferenceError(f"Ray actors could not load the pipeline: {exc}")
        self._actors[self._actors.index(actor)] = self._new_actor()
        error = f"Ray worker {actor.name} died ({reason})"
        return lost_attempt(actor.task, actor.name, actor.started, error)

    def close(self) -> None:
        ray = _import_ray()
        for actor in self._actors:
            try:
                ray.kill(actor.handle, no_restart=True)
            except Exception:  # already gone; closing must not mask the real error
                logger.debug("actor %s already gone", actor.name)
        self._actors = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
