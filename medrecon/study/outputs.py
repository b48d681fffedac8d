"""The files of a ``medrecon run`` output folder and the order they are written in.

:class:`OutputPlan` says which outputs a run makes (from the pipeline's list,
the run's :class:`~medrecon.study.output_options.OutputOptions` and the kind of
input); :func:`write_outputs` writes
them into a folder with fixed names, so a scene, a cohort table or a user's
script can find each file without asking:

``image.nii.gz``, ``labels.nii.gz`` (+ ``labels.labels.csv``, ``labels.ctbl``),
``segmentation.seg.nrrd``, ``meshes/<label>.<fmt>``, ``scene.mrml`` (+ ``scene.mrb``),
``seg.dcm``, ``stats.csv``, ``stats.json``, ``preview.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medrecon.errors import InputError
from medrecon.pipeline.config import Pipeline
from medrecon.study.output_options import MeshFormat, OutputOptions
from medrecon.volume import Volume

__all__ = ["OutputPlan", "WrittenOutputs", "write_outputs"]

logger = logging.getLogger(__name__)


IMAGE = "image.nii.gz"
LABELS = "labels.nii.gz"
LABELS_CSV = "labels.labels.csv"
LABELS_CTBL = "labels.ctbl"
SEG_NRRD = "segmentation.seg.nrrd"
MESH_DIR = "meshes"
SCENE = "scene.mrml"
MRB = "scene.mrb"
DICOM_SEG = "seg.dcm"
STATS_CSV = "stats.csv"
STATS_JSON = "stats.json"
PREVIEW = "preview.png"


@dataclass(frozen=True)
class OutputPlan:
    """Which outputs to write (names from :data:`~medrecon.pipeline.config.OUTPUTS`)."""

    outputs: tuple[str, ...]
    mrb: bool = False
    mesh_format: MeshFormat = MeshFormat.STL

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, options: OutputOptions | None = None) -> OutputPlan:
        """The plan for ``options`` (default: all defaults) run with ``pipeline``."""
        options = options or OutputOptions()
        if options.outputs is None:
            # The pipeline's list, checked as a user's list would be (--mrb needs its scene).
            options = replace(options, outputs=pipeline.outputs)
        chosen = tuple(options.outputs)
        if not options.dicom_seg:
            chosen = tuple(o for o in chosen if o != "dicom_seg")
        if "scene" in chosen and "image" not in chosen:
            chosen = ("image", *chosen)  # a scene without its image shows nothing useful
        return cls(outputs=chosen, mrb=options.mrb, mesh_format=options.mesh_format)

    def for_input(self, *, is_dicom: bool) -> OutputPlan:
        """Drop the DICOM SEG for non-DICOM input: it must reference source images."""
        if is_dicom or "dicom_seg" not in self.outputs:
            return self
        logger.info("input is not DICOM: no DICOM SEG is written")
        return replace(self, outputs=tuple(o for o in self.outputs if o != "dicom_seg"))

    def __contains__(self, name: str) -> bool:
        return name in self.outputs


@dataclass
class WrittenOutputs:
    """Files written (relative to the folder), per-label statistics and mesh figures."""

    files: list[str] = field(default_factory=list)
    #: Names of the labels present in the map, in label-table order.
    labels_found: list[str] = field(default_factory=list)
    stats: list[dict[str, Any]] = field(default_factory=list)
    meshes: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


Stage = Callable[[str], AbstractContextManager[None]]


def write_outputs(
    folder: Path,
    plan: OutputPlan,
    image: Volume,
    seg,
    *,
    stage: Stage,
    sources: Sequence[tuple[str, str]] = (),
) -> WrittenOutputs:
    """Write every planned output of segmentation ``seg`` of ``image`` into ``folder``.

    ``sources``: further volume files already in ``folder`` (name, node name) that the
    scene shows beside the image (the source stack of a reconstruction)."""
    from medrecon.export.colortable import write_color_csv, write_ctbl
    from medrecon.io.nifti import write_nifti

    out = WrittenOutputs()
    labels: Volume = seg.labels
    table = seg.label_table
    present = seg.present_labels()  # one pass over the map, shared with run.json
    out.labels_found = [label.name for label in present]
    if "image" in plan:
        with stage("image"):
            write_nifti(image, folder / IMAGE)
        out.files.append(IMAGE)
    if "labels" in plan:
        with stage("labels"):
            write_nifti(labels, folder / LABELS)
            write_color_csv(folder / LABELS_CSV, table)
            write_ctbl(folder / LABELS_CTBL, table)
        out.files += [LABELS, LABELS_CSV, LABELS_CTBL]
    if "seg_nrrd" in plan:
        with stage("seg_nrrd"):
            _write_seg_nrrd(folder, labels, table, out)
    mesh_files: list[tuple[str, Any]] = []
    if "meshes" in plan:
        with stage("meshes"):
            mesh_files = _write_meshes(folder, labels, table, plan.mesh_format.value, out)
    modality = image.meta.modality or seg.pipeline.modality
    if "stats" in plan:
        with stage("stats"):
            _write_stats(folder, labels, image, seg.pipeline, modality, out)
    if "dicom_seg" in plan:
        with stage("dicom_seg"):
            _write_dicom_seg(folder, labels, image, seg.pipeline, present, out)
    if "preview" in plan:
        with stage("preview"):
            from medrecon.export.preview import write_preview

            write_preview(folder / PREVIEW, image, labels, table, modality=modality)
        out.files.append(PREVIEW)
    if "scene" in plan:
        with stage("scene"):
            _write_scene(folder, plan, mesh_files, out, sources)
    return out


def _write_seg_nrrd(folder: Path, labels: Volume, table, out: WrittenOutputs) -> None:
    from medrecon.export.segnrrd import write_seg_nrrd

    write_seg_nrrd(folder / SEG_NRRD, labels, table)
    out.files.append(SEG_NRRD)


def _write_meshes(folder: Path, labels: Volume, table, fmt: str, out: WrittenOutputs):
    from medrecon.export.meshio import write_meshes

    mesh_dir = folder / MESH_DIR
    mesh_dir.mkdir(exist_ok=True)
    written = []
    for report in write_meshes(mesh_dir, labels, table, fmt=fmt):
        rel = f"{MESH_DIR}/{report.path.name}"
        written.append((rel, report.mesh.label))
        out.files.append(rel)
        out.meshes.append({**report.figures(), "file": rel})
    return written


def _write_stats(folder: Path, labels: Volume, image: Volume, pipeline, modality, out) -> None:
    from medrecon.export.stats import label_statistics, write_stats

    out.stats = label_statistics(labels, image, pipeline.labels)
    meta = {
        "study_uid": image.meta.study_uid,
        "series_uid": image.meta.series_uid,
        "series_number": image.meta.series_number,
        "pipeline": pipeline.name,
        "pipeline_version": pipeline.version,
        "modality": modality,
        "intensity_unit": "HU" if (modality or "").upper() == "CT" else "scanner units",
    }
    write_stats(folder / STATS_CSV, folder / STATS_JSON, out.stats, meta=meta)
    out.files += [STATS_CSV, STATS_JSON]


def _write_dicom_seg(folder, labels, image, pipeline, present, out: WrittenOutputs) -> None:
    if not present:
        # A DICOM SEG needs at least one segment; an empty result is recorded instead.
        _skip(out, "dicom_seg", "no label was found, and a DICOM SEG needs one segment")
        return
    from medrecon.export.dicomseg import write_dicom_seg

    try:
        write_dicom_seg(
            folder / DICOM_SEG,
            labels,
            pipeline.labels,
            image,
            pipeline_name=pipeline.name,
            pipeline_version=pipeline.version,
            warnings_out=out.warnings,  # e.g. UIDs generated for de-identified sources
        )
    except InputError as exc:
        # The other outputs stand on their own; a SEG the source cannot carry is reported.
        _skip(out, "dicom_seg", str(exc))
        return
    out.files.append(DICOM_SEG)


def _skip(out: WrittenOutputs, name: str, reason: str) -> None:
    out.skipped[name] = reason
    out.warnings.append(f"no {name} written: {reason}")
    logger.warning(out.warnings[-1])


def _write_scene(folder: Path, plan: OutputPlan, mesh_files, out: WrittenOutputs, sources) -> None:
    from medrecon.export.scene import write_mrb, write_scene

    write_scene(
        folder / SCENE,
        image=IMAGE if "image" in plan else None,
        labels=LABELS if "labels" in plan else None,
        color_table=LABELS_CSV if "labels" in plan else None,
        segmentation=SEG_NRRD if "seg_nrrd" in plan else None,
        meshes=mesh_files,
        volumes=sources,
    )
    out.files.append(SCENE)
    if plan.mrb:
        write_mrb(folder, folder / MRB)
        out.files.append(MRB)
