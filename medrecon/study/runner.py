"""``run_study``: one study in, every Slicer-ready output out (``medrecon run``).

The study is read, the series that fits the pipeline is chosen, segmented, and
each output the pipeline lists is written into a temporary folder beside
OUTDIR; the folder is renamed into place only when everything (``run.json``
last) is written, so an interrupted run leaves a whole result or none. With
``pipeline="auto"`` (the default) the series is chosen first, among those of any
modality a shipped pipeline is made for, and its modality then picks the
pipeline (:mod:`medrecon.pipeline.auto`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medrecon.atomic import atomic_write_json, commit_staging
from medrecon.errors import InputError, OutputExistsError
from medrecon.models.ref import ModelRef, as_model_ref
from medrecon.pipeline.auto import choose_pipeline, is_auto
from medrecon.pipeline.config import Pipeline
from medrecon.pipeline.domain import check_domain
from medrecon.study.output_folder import check_replaceable, staging_folder, write_failure
from medrecon.study.output_options import OutputOptions
from medrecon.study.outputs import OutputPlan, write_outputs
from medrecon.study.reconstruction import (
    ReconstructOptions,
    reconstruct_input,
    write_reconstruction_files,
)
from medrecon.study.record import RUN_JSON, is_complete, run_record
from medrecon.volume import Volume

__all__ = ["RUN_JSON", "RunResult", "is_complete", "run_study"]

logger = logging.getLogger(__name__)


#: Called after each stage with its name and duration in seconds; one with
#: ``start(stage)`` and ``update(what, done, total)`` methods also hears the steps
#: inside a stage (:class:`medrecon.progress.StageProgress`).
Progress = Callable[[str, float], None]


@dataclass
class RunResult:
    """What ``run_study`` made and how."""

    outdir: Path
    status: str
    input_kind: str
    series_uid: str | None
    series_number: int | None
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Names of the labels found, in label-table order.
    labels_found: list[str] = field(default_factory=list)
    #: One row per label found (see :func:`medrecon.export.stats.label_statistics`);
    #: empty when the stats output was not asked for.
    stats: list[dict[str, Any]] = field(default_factory=list)
    run_json: Path | None = None
    outputs: list[str] = field(default_factory=list)
    #: The pipeline that segmented the study, and why it was the one.
    pipeline: str = ""
    pipeline_choice: str = ""
    #: With ``reconstruct``: the reconstruction's sidecar (``{"skipped": why}`` when the
    #: stack was already isotropic); None without.
    reconstruction: dict[str, Any] | None = None


class _Clock:
    """Times named stages and reports each to the progress callback."""

    def __init__(self, progress: Progress | None) -> None:
        self.timings: dict[str, float] = {}
        self._progress = progress

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        from medrecon.progress import stage_scope

        t0 = time.perf_counter()
        with stage_scope(self._progress, name):  # steps inside the stage reach it too
            yield
        seconds = time.perf_counter() - t0
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        # Once: a progress callback shows the stage already, so the log line is debug.
        logger.log(logging.DEBUG if self._progress else logging.INFO, "%s: %.2f s", name, seconds)
        if self._progress is not None:
            self._progress(name, seconds)


def _load_series(path: Path, modality, modalities, series, where: str, warnings: list[str]):
    """The volume to segment, chosen by :func:`medrecon.study.selection.choose_series`
    (``modality`` None and ``modalities`` given for the auto pipeline), the choice, and
    the input's kind (``dicom``, ``zip``, ``nifti`` or ``itk``, as the load found it)."""
    from medrecon.io.api import read
    from medrecon.study.selection import choose_series, describe_series

    picked: list[str] = []

    def select(summaries):
        choice = choose_series(
            summaries, modality=modality, modalities=modalities, series=series, where=where
        )
        s = summaries[choice.index]
        picked.append(f"series {describe_series(s)}: {choice.reason}")
        return [choice.index]

    result = read(path, select=select)
    if picked:
        logger.info("%s: %s", where, picked[0])
    volume = result.volumes[0]
    if volume.meta.frame_axis == "rgb":
        raise InputError(
            f"{where}: the volume is a colour (RGB) image {volume.shape}; segmentation needs a "
            "greyscale 3D volume (CT or MR). Pass --series to choose a greyscale series."
        )
    if volume.array.ndim != 3:
        raise InputError(
            f"{where}: the volume is 4D {volume.shape}; segmentation needs one 3D volume. "
            "Pass --series to choose a 3D series."
        )
    warnings.extend(volume.meta.warnings)
    return volume, (picked[0] if picked else None), result.input_kind


def _check_paths(source: Path, outdir: Path, overwrite: bool) -> None:
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    src, out = source.resolve(), outdir.resolve()
    if src == out or out in src.parents:
        raise InputError(
            f"output folder {outdir} contains the input {source}; choose an output folder "
            "outside the study so the input can never be overwritten"
        )
    if outdir.exists() and not overwrite:
        raise OutputExistsError(
            f"{outdir} exists; pass --overwrite to replace it, or choose another folder"
        )
    if outdir.exists():
        check_replaceable(outdir)  # --overwrite replaces only a folder medrecon wrote


def _config(model, segmenter, segmenters) -> tuple[Pipeline, str]:
    """The model's pipeline and how it was given (for run.json), without loading its model."""
    from medrecon.models.resolve import resolve_model

    if segmenter is not None:
        return segmenter.pipeline, "given: a loaded Segmenter"
    if isinstance(model, Pipeline):
        return model, f"given: pipeline object {model.name!r}"
    # A cohort worker's cache reads each model once and checks its weights when it loads them.
    choice = segmenters.resolve(model) if segmenters is not None else resolve_model(model)
    return choice.pipeline, f"given: {choice.found}"


def _segmenter_for(config: Pipeline, model, segmenter, segmenters, device: str):
    from medrecon.models.engines import build_engine

    if segmenter is not None:
        return segmenter
    if segmenters is not None:
        return segmenters.get(model)  # remembered as given: parsed once
    return build_engine(config, device=device)


def _volume_checks(labels: Volume, pipe: Pipeline) -> list[str]:
    from medrecon.labels.plausibility import volume_warnings

    found = volume_warnings(labels.array, labels.voxel_ml, pipe.labels)
    for message in found:  # returned for run.json and the CLI's summary
        logger.info("%s", message)
    return found


def _plan(pipe: Pipeline, options: OutputOptions) -> OutputPlan:
    return OutputPlan.from_pipeline(pipe, options)


def _auto_candidates(options: OutputOptions) -> list[str]:
    """The modalities auto can segment; the output options are checked against every
    shipped pipeline first, so a bad option fails before the study is read."""
    from medrecon.pipeline.registry import shipped_pipelines

    shipped = shipped_pipelines()
    for candidate in shipped:
        OutputPlan.from_pipeline(candidate, options)
    return sorted({p.modality for p in shipped})


def run_study(
    input_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | Pipeline | ModelRef | None = None,
    pipeline: str | os.PathLike[str] | Pipeline | ModelRef | None = None,
    segmenter=None,
    segmenters=None,
    device: str = "auto",
    series: str | int | None = None,
    output_options: OutputOptions | None = None,
    overwrite: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    input_label: str | None = None,
    reconstruct: ReconstructOptions | bool | None = None,
) -> RunResult:
    """Segment one study and write every output into ``outdir``.

    ``model`` (or its older name ``pipeline``): ``"auto"`` (default) picks the
    series among those of any modality a shipped pipeline is made for, then the
    shipped pipeline for its modality (inferred from the intensities for
    NIfTI/NRRD/MHA, with a warning); or any model ``--model`` takes (a shipped
    pipeline's name, a YAML path, a MONAI bundle or nnU-Net v2 folder,
    ``totalsegmentator:TASK``; a :class:`~medrecon.models.ref.ModelRef`
    carries its options) or a Pipeline, whose modality the series must have
    (``force`` segments a study of another modality or body part anyway, with a
    warning, instead of raising :class:`~medrecon.errors.OutOfDomainError`).
    ``segmenter`` (a loaded :class:`~medrecon.pipeline.segment.Segmenter`)
    is reused when given; ``model`` and ``device`` are then ignored.
    ``segmenters`` (a :class:`~medrecon.models.cache.SegmenterCache`) supplies
    the Segmenter of whichever pipeline is chosen, so a cohort worker loads each
    model once; ``device`` is then the cache's. ``output_options`` says what is
    written (default: the pipeline's outputs, STL meshes, with the DICOM SEG). Raises a
    :class:`~medrecon.errors.MedreconError` subclass for bad input; nothing is
    left in ``outdir`` then. ``input_label`` is the input as ``run.json`` records
    it, when ``input_path`` is a stand-in (a cohort's folder of links to one study's
    files); by default the resolved input path. ``reconstruct`` (True or a
    :class:`~medrecon.study.reconstruction.ReconstructOptions`) reconstructs the chosen
    thick stack first and segments the reconstruction: every output is on its grid
    (:mod:`medrecon.study.reconstruction`).
    """
    source, outdir = Path(input_path), Path(outdir)
    _check_paths(source, outdir, overwrite)
    options = output_options or OutputOptions()
    recon_options = ReconstructOptions.of(reconstruct)
    # Before any pipeline, model or study is read: an unwritable location fails in one line.
    with staging_folder(outdir) as tmp:
        started = datetime.now(timezone.utc)
        clock = _Clock(progress)
        warnings: list[str] = []
        ref = as_model_ref(model, pipeline=pipeline)
        auto = segmenter is None and is_auto(ref)
        modalities = None
        if auto:
            modalities = _auto_candidates(options)
        else:
            # An explicit model is read first: a bad one fails before the study is read.
            config, why = _config(ref, segmenter, segmenters)
            plan = _plan(config, options)
        # --force lifts the modality filter: any series may be chosen, with a warning.
        modality = None if auto or force else config.modality
        with clock.stage("load"):
            volume, chosen, kind = _load_series(
                source,
                modality,
                modalities,
                series,
                str(source),
                warnings,
            )
        if auto:
            auto_choice = choose_pipeline(volume, where=str(source))
            warnings.extend(auto_choice.warnings)
            why = auto_choice.reason
            ref = ref.with_ref(auto_choice.path)
            config, _ = _config(ref, None, segmenters)
            plan = _plan(config, options)
        plan = plan.for_input(is_dicom=kind in ("dicom", "zip"))
        domain = check_domain(volume, config, where=str(source), force=force)
        warnings.extend(domain.warnings)
        source_volume, recon = volume, None
        if recon_options is not None:
            with clock.stage("reconstruct"):
                recon = reconstruct_input(volume, recon_options, device=device, where=str(source))
            volume = recon.volume
            warnings.extend(recon.warnings)
        with clock.stage("load_model"):
            seg_engine = _segmenter_for(config, ref, segmenter, segmenters, device)
        pipe: Pipeline = seg_engine.pipeline
        logger.info("%s: pipeline %s (%s)", source, pipe.name, why)
        with clock.stage("segment"):
            seg = seg_engine(volume)
        warnings.extend(seg.warnings)
        warnings.extend(_volume_checks(seg.labels, pipe))
        for name, seconds in seg.timings.items():
            clock.timings[f"segment.{name}"] = seconds
        try:
            extra = []
            if recon is not None:
                extra = write_reconstruction_files(tmp, recon, source="image" in plan)
            sources = [(name, "source") for name in extra if name.endswith(".nii.gz")]
            written = write_outputs(tmp, plan, volume, seg, stage=clock.stage, sources=sources)
            written.files += extra
        except OSError as exc:
            raise write_failure(outdir, exc) from exc
        warnings.extend(written.warnings)
        result = RunResult(
            outdir=outdir,
            status="complete",
            input_kind=kind,
            series_uid=volume.meta.series_uid,
            series_number=volume.meta.series_number,
            device=seg.device,
            timings=clock.timings,
            warnings=warnings,
            labels_found=written.labels_found,
            stats=written.stats,
            outputs=sorted(written.files),
            pipeline=pipe.name,
            pipeline_choice=why,
            reconstruction=None if recon is None else recon.record,
        )
        label = input_label if input_label is not None else str(source.resolve())
        record = run_record(label, source_volume, chosen, pipe, result, written, started)
        record["input"]["modality_source"] = domain.modality_source
        record["input"]["body_part"] = domain.body_part
        if recon is not None:
            record["reconstruction"] = recon.record
        try:
            atomic_write_json(tmp / RUN_JSON, record)
            commit_staging(tmp, outdir)  # an old outdir is replaced only now
        except OSError as exc:
            raise write_failure(outdir, exc) from exc
    result.run_json = outdir / RUN_JSON
    return result
