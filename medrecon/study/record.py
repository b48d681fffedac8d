"""``run.json``: the record of one ``medrecon run`` (input, pipeline, versions,
timings, warnings, outputs), and the check that a folder holds a complete run."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from medrecon.volume import Volume

if TYPE_CHECKING:  # pragma: no cover - typing only
    from medrecon.pipeline.config import Pipeline

__all__ = ["RUN_JSON", "is_complete", "run_record"]

RUN_JSON = "run.json"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ("medrecon", "numpy", "torch", "monai", "nibabel", "pydicom", "SimpleITK")
    names += ("scikit-image", "highdicom", "pynrrd", "vtk")
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def run_record(source: str, volume: Volume, chosen, pipe: Pipeline, result, written, started):
    from medrecon.pipeline.weights import sha256_file

    weights = pipe.weights
    meta = volume.meta
    return {
        "status": result.status,
        "input": {
            "path": source,
            "kind": result.input_kind,
            "series_uid": meta.series_uid,
            "missing_uids": list(meta.extra.get("missing_uids", [])),
            "series_number": meta.series_number,
            "series_description": meta.description,
            "study_uid": meta.study_uid,
            "modality": meta.modality,
            "series_choice": chosen,
            "n_source_files": len(meta.source_files),
            "shape": list(volume.shape),
            "spacing_mm": [round(s, 6) for s in volume.spacing],
            "orientation": "".join(volume.orientation_codes()),
            "gantry_tilt_deg": meta.gantry_tilt_deg,
        },
        "pipeline": {
            "name": pipe.name,
            "engine": pipe.engine,
            "version": pipe.version,
            "file": str(pipe.source) if pipe.source else None,
            "weights": str(weights.path) if weights else None,
            "weights_sha256": sha256_file(weights.path) if weights else None,
            "choice": result.pipeline_choice,
        },
        "device": result.device,
        "versions": _versions(),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "labels_found": result.labels_found,
        "meshes": written.meshes,
        "skipped_outputs": written.skipped,
        "warnings": result.warnings,
        "outputs": [*result.outputs, RUN_JSON],
    }


def is_complete(outdir: str | os.PathLike[str]) -> bool:
    """True when ``outdir/run.json`` says complete and every file it lists exists."""
    import json

    path = Path(outdir) / RUN_JSON
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("status") != "complete":
        return False
    return all((Path(outdir) / rel).is_file() for rel in record.get("outputs", []))
