"""``run_cohort``: every study of a cohort through ``run_study``, resumable and
fault-isolated, on the local engine or on Ray.

The driver decides what to run (studies whose folder is not complete, or all
with ``force``), hands studies to the engine's workers, re-queues a failed
attempt up to ``retries`` times (input errors, which would fail the same way
again, are not retried), writes ``error.txt`` for a study that stays failed and
keeps ``cohort.csv`` up to date as studies finish. What to do comes as one
:class:`~medrecon.cohort.spec.CohortSpec`. Killing it at any moment
loses nothing: finished studies are whole folders, unfinished ones leave only
temporary files, which the next run deletes before it starts.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medrecon.cohort.progress import CohortEvent, ProgressBar
from medrecon.cohort.spec import CohortSpec, EngineKind, EngineSettings
from medrecon.cohort.state import (
    COMPLETE,
    FAILED,
    StudyRecord,
    clean_attempt,
    clean_partial,
    cohort_lock,
    record_from_outdir,
    study_complete,
    write_error,
)
from medrecon.cohort.studies import Study, discover_studies
from medrecon.cohort.table import COHORT_CSV, write_cohort_csv
from medrecon.cohort.worker import WorkerSpec
from medrecon.errors import PipelineError
from medrecon.models.ref import as_model_ref
from medrecon.pipeline.auto import is_auto

__all__ = ["COHORT_LOG", "CohortResult", "run_cohort"]

logger = logging.getLogger(__name__)
journal = logging.getLogger("medrecon.cohort.journal")

COHORT_LOG = "cohort.log"
_CSV_EVERY_S = 2.0  # rewrite cohort.csv at most this often while studies finish


@dataclass
class CohortResult:
    """What a cohort run ended with; ``records`` follow the studies' order."""

    outdir: Path
    records: list[StudyRecord]
    cohort_csv: Path
    seconds: float
    log_file: Path | None = None
    n_workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> list[StudyRecord]:
        return [r for r in self.records if r.status == COMPLETE]

    @property
    def failed(self) -> list[StudyRecord]:
        return [r for r in self.records if r.status == FAILED]

    @property
    def ok(self) -> bool:
        """True when every study is complete."""
        return len(self.complete) == len(self.records)


def _model_ref(model):
    """``auto``, or the model as a ModelRef with absolute paths (workers may start
    elsewhere), or the Pipeline object."""
    from medrecon.pipeline.config import Pipeline

    if isinstance(model, Pipeline):
        return model
    return model.absolute()


def _cohort_labels(model) -> list[str]:
    """cohort.csv's volume columns: the model's labels, or for ``auto`` those of
    every shipped pipeline it may choose (once each, in order). An explicit
    model is read here so that a bad one fails before any worker starts."""
    from medrecon.models.resolve import resolve_model
    from medrecon.pipeline.config import Pipeline
    from medrecon.pipeline.registry import shipped_pipelines

    if isinstance(model, Pipeline):
        return [label.name for label in model.labels]
    if not is_auto(model):
        return [label.name for label in resolve_model(model).pipeline.labels]
    shipped = shipped_pipelines()
    if not shipped:
        raise PipelineError(
            "no shipped pipelines are installed, so auto has none to choose from; "
            "pass --model NAME_OR_PATH"
        )
    names: dict[str, None] = {}
    for candidate in shipped:
        for label in candidate.labels:
            names.setdefault(label.name, None)
    return list(names)


def _make_engine(settings: EngineSettings, spec: WorkerSpec, n_todo: int):
    if settings.kind is EngineKind.RAY:
        from medrecon.cohort.ray_engine import RayEngine

        return RayEngine(
            spec,
            workers=settings.workers,
            address=settings.address,
            gpus_per_study=settings.gpus_per_study,
            study_timeout=settings.timeout,
        )
    from medrecon.cohort.local import InlineEngine, LocalEngine, cpu_count

    n = 1 if settings.workers is None else settings.workers
    if n == 0:
        return InlineEngine(spec)
    n = min(n, max(1, n_todo))
    if spec.threads is None:  # share the CPUs, not oversubscribe them
        spec = replace(spec, threads=max(1, cpu_count() // n))
    return LocalEngine(spec, n, study_timeout=settings.timeout)


class _LogFile:
    """cohort.log: the cohort's journal plus every medrecon warning, while the run lasts."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._handler: logging.Handler | None = None
        self._saved = (journal.level, journal.propagate)

    def __enter__(self) -> _LogFile:
        if self.path is not None:
            journal.setLevel(logging.INFO)
            self._handler = logging.FileHandler(self.path, encoding="utf-8")
            self._handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            journal.propagate = False  # the file has it; the console has the progress bar
            journal.addHandler(self._handler)
            logging.getLogger("medrecon").addHandler(self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._handler is not None:
            journal.removeHandler(self._handler)
            logging.getLogger("medrecon").removeHandler(self._handler)
            self._handler.close()
        journal.setLevel(self._saved[0])
        journal.propagate = self._saved[1]


def run_cohort(
    input_path: str | os.PathLike[str] | Sequence[Study],
    outdir: str | os.PathLike[str],
    spec: CohortSpec | None = None,
) -> CohortResult:
    """Run every study under ``input_path`` into ``outdir/<study>/``.

    ``input_path``: a folder of study folders, a DICOM folder (split by
    StudyInstanceUID), a CSV/JSON manifest, or a list of :class:`Study`.
    ``spec`` (default: ``CohortSpec()``, the auto model on one local worker, two
    retries) says how: ``spec.study`` the model, device and output options every
    study gets (each worker loads each model once), ``spec.engine`` where they run,
    ``spec.reporting`` the progress bar, ``cohort.log`` and event callback, and
    ``spec.force`` redoes studies already complete in ``outdir`` (skipped otherwise).
    """
    spec = spec or CohortSpec()
    t0 = time.perf_counter()
    out = Path(outdir).resolve()
    if isinstance(input_path, str | os.PathLike):
        studies = discover_studies(Path(input_path).resolve(), layout=spec.layout)
    else:
        studies = list(input_path)
    ref = as_model_ref(spec.study.model)
    labels = _cohort_labels(ref)
    out.mkdir(parents=True, exist_ok=True)
    worker_spec = WorkerSpec(
        study=replace(spec.study, model=_model_ref(ref)),
        outdir=out,
        threads=spec.engine.threads,
    )
    report = spec.reporting
    bar = ProgressBar(len(studies)) if report.progress else None
    listeners = [f for f in (report.on_event, bar) if f]
    log_path = out / COHORT_LOG if report.log_file else None
    with cohort_lock(out), _LogFile(log_path):
        clean_partial(out, [s.id for s in studies])
        run = _CohortRun(studies, out, labels, listeners, spec.engine.retries)
        run.resume(spec.force)
        n_workers = run.execute(lambda n: _make_engine(spec.engine, worker_spec, n))
    records = [run.records[s.id] for s in studies if s.id in run.records]
    result = CohortResult(out, records, out / COHORT_CSV, time.perf_counter() - t0, log_path)
    result.n_workers = n_workers
    journal.info(
        "cohort finished in %.1f s: %d complete, %d failed",
        result.seconds,
        len(result.complete),
        len(result.failed),
    )
    return result


class _CohortRun:
    """The driver's bookkeeping for one run: records, queue, events, cohort.csv."""

    def __init__(self, studies, outdir: Path, labels, listeners, retries: int) -> None:
        self.studies = studies
        self.by_id = {s.id: s for s in studies}
        self.outdir = outdir
        self.labels = labels
        self.listeners = listeners
        self.retries = retries
        self.records: dict[str, StudyRecord] = {}
        self.todo: list[Study] = []
        self._csv_at = 0.0

    def emit(self, event: CohortEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def write_csv(self, now: bool = False) -> None:
        if now or time.monotonic() - self._csv_at >= _CSV_EVERY_S:
            write_cohort_csv(self.outdir / COHORT_CSV, self.studies, self.records, self.labels)
            self._csv_at = time.monotonic()

    def resume(self, force: bool) -> None:
        for study in self.studies:
            folder = self.outdir / study.id
            if not force and study_complete(folder):
                self.records[study.id] = record_from_outdir(study, folder)
                journal.info("%s: already complete, skipped", study.id)
                self.emit(CohortEvent("skip", study.id))
            else:
                self.todo.append(study)
        journal.info(
            "cohort of %d studies: %d to run, %d already complete",
            len(self.studies),
            len(self.todo),
            len(self.studies) - len(self.todo),
        )

    def execute(self, make_engine) -> int:
        """Run the studies in ``todo``; returns the number of workers used."""
        self.write_csv(now=True)
        if not self.todo:
            return 0
        engine = make_engine(len(self.todo))
        try:
            engine.start(len(self.todo))
            self._loop(engine)
            return engine.n_workers
        finally:
            engine.close()
            self.write_csv(now=True)

    def _loop(self, engine) -> None:
        queue = deque((study, 1) for study in self.todo)
        while queue or engine.busy:
            while queue and engine.idle:
                study, attempt = queue.popleft()
                worker = engine.submit(study, attempt)
                journal.info("%s: attempt %d on %s", study.id, attempt, worker)
                self.emit(CohortEvent("start", study.id, attempt, worker))
            for record in engine.wait(1.0):
                study = self.by_id[record.study]
                if record.status == FAILED:
                    clean_attempt(self.outdir, study.id)
                if record.status == FAILED and record.retryable and record.attempts <= self.retries:
                    journal.warning(
                        "%s: attempt %d failed (%s); retrying",
                        study.id,
                        record.attempts,
                        record.error,
                    )
                    self.emit(
                        CohortEvent("retry", study.id, record.attempts, record.worker, record)
                    )
                    queue.append((study, record.attempts + 1))
                    continue
                self._finish(study, record)

    def _finish(self, study: Study, record: StudyRecord) -> None:
        self.records[study.id] = record
        if record.status == FAILED:
            write_error(self.outdir / study.id, record, str(study.path))
            journal.error(
                "%s: failed after %d attempt(s): %s", study.id, record.attempts, record.error
            )
        else:
            journal.info(
                "%s: complete in %.1f s on %s (%s)",
                study.id,
                record.seconds or 0.0,
                record.worker,
                record.device,
            )
            for warning in record.warnings:
                journal.warning("%s: %s", study.id, warning)
        self.emit(CohortEvent(record.status, study.id, record.attempts, record.worker, record))
        self.write_csv()
