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
from dataclasses import dataclass, replace
from typing import Any

from medrecon.cohort.engine import Slot, SlotEngine
from medrecon.cohort.state import StudyRecord
from medrecon.cohort.studies import Study
from medrecon.cohort.worker import StudyWorker, WorkerSpec
from medrecon.errors import InputError

__all__ = ["RayEngine", "StudyActor"]

logger = logging.getLogger(__name__)


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
class _ActorSlot(Slot):
    """An actor (``handle``), its start-up result and the result of the study it runs."""

    ready_ref: Any = None
    task_ref: Any = None


class RayEngine(SlotEngine):
    """``workers`` actors on a Ray cluster (a local one unless ``address`` is given).

    ``workers=None`` fills the cluster: one actor per ``gpus_per_study`` GPU
    share when that is set, else one per ``cpus_per_worker`` CPUs.
    ``gpus_per_study=None`` means 0.5 when the cluster has GPUs, else 0.
    """

    start_timeout_s = 900.0

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
        super().__init__(spec, study_timeout)
        self.address = address
        self.requested = workers
        self.gpus_per_study = gpus_per_study
        self.cpus_per_worker = cpus_per_worker
        self._owns_ray = False
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
        self._start_slots(n, "Ray actors")

    def _new_slot(self) -> _ActorSlot:
        handle = self._actor_cls.remote(self.spec)
        return _ActorSlot(handle, ready_ref=handle.info.remote())

    def _send(self, slot: _ActorSlot, study: Study, attempt: int) -> None:
        slot.task_ref = slot.handle.process.remote(study, attempt)

    def _poll(self, timeout: float) -> list[StudyRecord]:
        ray = _import_ray()
        refs = {}
        for actor in self._slots:
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

    def _retire(self, slot: _ActorSlot, cause: Exception | str, timed_out: bool) -> str:
        ray = _import_ray()
        if isinstance(cause, str):
            reason = cause
        else:
            text = str(cause).strip()
            reason = f"{type(cause).__name__}: {text.splitlines()[0][:300] if text else ''}"
        logger.warning("Ray actor %s failed: %s", slot.name or "(starting)", reason)
        ray.kill(slot.handle, no_restart=True)  # a timed-out actor too: this is its kill
        return reason

    def _lost_error(self, slot: _ActorSlot, reason: str) -> str:
        return f"Ray worker {slot.name} died ({reason})"

    def _hopeless(self) -> bool:
        return not any(a.ready for a in self._slots)  # no actor could load the pipeline

    def _start_error(self, reason: str, cause: Any) -> str:
        return f"Ray actors could not load the pipeline: {cause}"

    def close(self) -> None:
        ray = _import_ray()
        for actor in self._slots:
            try:
                ray.kill(actor.handle, no_restart=True)
            except Exception:  # already gone; closing must not mask the real error
                logger.debug("actor %s already gone", actor.name)
        self._slots = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
