"""Write every volume of an input as NIfTI with a JSON sidecar (``medrecon convert``)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from medrecon.atomic import atomic_write_json
from medrecon.errors import OutputExistsError
from medrecon.io.api import read
from medrecon.io.nifti import write_nifti
from medrecon.volume import Volume

__all__ = ["convert", "output_stem", "sidecar"]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
_MAX_STEM = 80


def _clean(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._-")


def output_stem(volume: Volume) -> str:
    """``<SeriesNumber>_<description>[_<what distinguishes it>]``, safe as a file name.

    Tag values are never used unchecked: anything but letters, digits and ``.+-``
    becomes ``_``, leading dots are removed, and the length is capped.
    """
    meta = volume.meta
    number = str(meta.series_number) if meta.series_number is not None else "0"
    parts = [_clean(number) or "0", _clean(meta.description) or (meta.modality or "series")]
    parts += [_clean(f"{k}-{v}") for k, v in meta.distinguishing.items()]
    stem = "_".join(p for p in parts if p)
    return stem[:_MAX_STEM].rstrip("._-") or "series"


def sidecar(volume: Volume) -> dict[str, Any]:
    """BIDS-like sidecar: identifiers, geometry and every warning."""
    from medrecon._version import __version__

    meta = volume.meta
    return {
        "SeriesInstanceUID": meta.series_uid,
        # De-identified files: which UIDs were blank, and whether the one above is derived.
        "MissingUIDs": list(meta.extra.get("missing_uids", [])),
        "SeriesInstanceUIDDerived": "SeriesInstanceUID" in meta.extra.get("missing_uids", []),
        "SeriesNumber": meta.series_number,
        "SeriesDescription": meta.description,
        "Modality": meta.modality,
        "StudyInstanceUID": meta.study_uid,
        "FrameOfReferenceUID": meta.frame_of_reference_uid,
        "Shape": list(volume.shape),
        "VoxelSpacingMM": [round(s, 6) for s in volume.spacing],
        "Orientation": "".join(volume.orientation_codes()),
        "DataType": str(volume.array.dtype),
        "GantryTiltDegrees": round(meta.gantry_tilt_deg, 4),
        "Distinguishing": meta.distinguishing,
        "FrameAxis": meta.frame_axis,
        "Warnings": list(meta.warnings),
        "SourceFileCount": len(meta.source_files),
        "SourceFiles": list(meta.source_files),
        # Vendor rules applied (Philips scale factors and choice, derived frames, GE pepolar).
        **meta.extra.get("vendor", {}),
        "ConversionSoftware": f"medrecon {__version__}",
    }


def _json_path(nifti: Path) -> Path:
    return nifti.with_name(nifti.name[: -len(".nii.gz")] + ".json")


def convert(
    input_path: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    **options: Any,
) -> list[Path]:
    """Load every volume under ``input_path`` and write ``out_dir/<stem>.nii.gz`` + ``.json``.

    Everything is loaded before anything is written, and each file is written
    atomically, so a failure leaves no partial output. Existing files are refused
    unless ``overwrite``.
    """
    result = read(input_path, **options)
    out = Path(out_dir)
    stems: dict[str, int] = {}
    plan: list[tuple[Volume, Path]] = []
    for volume in result.volumes:
        stem = output_stem(volume)
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:
            stem = f"{stem}_{stems[stem]}"
        plan.append((volume, out / f"{stem}.nii.gz"))
    if not overwrite:
        clashes = [
            p for _, p in plan if p.exists() or p.with_suffix("").with_suffix(".json").exists()
        ]
        if clashes:
            raise OutputExistsError(
                f"{clashes[0]} exists already ({len(clashes)} output(s) would be replaced); "
                "choose another output folder or pass --overwrite."
            )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for volume, path in plan:
        write_nifti(volume, path)
        atomic_write_json(_json_path(path), sidecar(volume))
        log.info("wrote %s", path)
        written.append(path)
    return written
