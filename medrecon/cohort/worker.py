"""The work one cohort worker does: hold loaded models, run studies with them.

Both engines use :class:`StudyWorker`: the local engine in each worker process,
Ray in each actor. The worker keeps a :class:`~medrecon.models.cache.SegmenterCache`,
so each pipeline's model is loaded once, however many studies use it: an explicit
pipeline in the constructor (a bad one stops the cohort at start-up), the
pipelines ``auto`` picks (one per modality) when a study first needs them. Each
study is one ``run_study`` call. Errors never escape :meth:`StudyWorker.process`:
they come back as a failed :class:`StudyRecord` with the traceback, so an
exception that cannot be pickled cannot take the engine down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from medrecon.cohort.spec import StudySettings
from medrecon.cohort.state import COMPLETE, FAILED, StudyRecord, links_folder
from medrecon.cohort.studies import Study, study_output_options
from medrecon.errors import DicomError, InputError

__all__ = ["WorkerSpec", "StudyWorker", "worker_name"]

logger = logging.getLogger(__name__)

#: Errors caused by the input itself: the same input fails the same way again.
_NOT_RETRYABLE = (InputError, DicomError)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, picklable (it travels to processes and Ray actors).

    ``study.model`` is a :class:`~medrecon.models.ref.ModelRef` (``auto``: by
    each study's modality; paths absolute and readable on every worker node) or a
    Pipeline object; ``study`` holds what every study is run with (a manifest row
    may change its own output options). ``threads``: torch threads of the worker.
    """

    study: StudySettings
    outdir: Path
    threads: int | None = None


def worker_name() -> str:
    """``host:pid``, so cohort.csv says where each study ran."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _link_files(study: Study, folder: Path) -> Path:
    """A private folder of links to a split study's files (copies where links fail)."""
    folder.mkdir(parents=True)
    for i, src in enumerate(study.files):
        dst = folder / f"{i:06d}_{src.name}"  # numbered: two sub-folders may share a name
        try:
            os.symlink(src.resolve(), dst)
        except OSError:  # pragma: no cover - file systems without symlinks
            shutil.copy2(src, dst)
    return folder


class StudyWorker:
    """One worker: its Segmenters (one per pipeline, loaded once) and the study settings."""

    def __init__(self, spec: WorkerSpec) -> None:
        from medrecon.models.cache import SegmenterCache
        from medrecon.pipeline.auto import is_auto

        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.segmenters = SegmenterCache(device=spec.study.device)
        t0 = time.perf_counter()
        if not is_auto(spec.study.model):
            self.segmenters.get(spec.study.model)
        self.load_seconds = time.perf_counter() - t0
        self.name = worker_name()
        if len(self.segmenters):
            logger.info("worker %s: model loaded in %.2f s", self.name, self.load_seconds)
        else:
            logger.info("worker %s: ready; models load when a study first needs them", self.name)

    def process(self, study: Study, attempt: int = 1) -> StudyRecord:
        """Run one study into ``OUTDIR/<study.id>``; never raises."""
        t0 = time.perf_counter()
        staging = None
        try:
            source = study.path
            if study.files:
                staging = links_folder(self.spec.outdir, study.id)
                source = _link_files(study, staging)
            record = self._run(study, source)
        except BaseException as exc:  # recorded, never raised: one study must not stop a cohort
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            record = StudyRecord(
                study=study.id,
                status=FAILED,
                input=str(study.path),
                error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                traceback=traceback.format_exc(),
                retryable=not isinstance(exc, _NOT_RETRYABLE),
            )
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
                with contextlib.suppress(OSError):  # other workers may still use it
                    staging.parent.rmdir()
        record.attempts = attempt
        record.worker = self.name
        record.seconds = round(time.perf_counter() - t0, 3)
        return record

    def _run(self, study: Study, source: Path) -> StudyRecord:
        from medrecon.study.runner import run_study

        settings = self.spec.study
        study_dir = self.spec.outdir / study.id
        result = run_study(
            source,
            study_dir,
            model=settings.model,
            segmenters=self.segmenters,
            series=study.options.get("series"),
            output_options=study_output_options(settings.output_options, study),
            force=settings.force_domain,
            overwrite=study_dir.exists(),  # only unfinished (or --force) studies get here
            input_label=str(Path(study.path).resolve()),  # not a split study's links folder
        )
        return StudyRecord(
            study=study.id,
            status=COMPLETE,
            input=str(study.path),
            input_kind="dicom" if study.files else result.input_kind,
            series_uid=result.series_uid or "",
            series_number=result.series_number,
            pipeline=result.pipeline,
            device=result.device,
            timings={k: round(v, 3) for k, v in result.timings.items()},
            volumes_ml={
                str(r["name"]): float(r["volume_ml"])
                for r in result.stats
                if r.get("volume_ml") is not None
            }
            if "stats.json" in result.outputs
            else None,
            warnings=list(result.warnings),
        )
