"""``medrecon run --reconstruct``: segment the reconstruction of a thick stack.

After the series is chosen and read, :func:`reconstruct_input` reconstructs it with
:func:`medrecon.superres.api.reconstruct` (default isotropic grid at its in-plane
spacing), and the run segments that volume instead: every output (image, labels,
seg.nrrd, meshes, stats, preview, DICOM SEG) is on the reconstruction's grid. The
output folder also holds ``source.nii.gz`` (the stack as read, a volume node of the
scene) and ``reconstruction.json`` (the sidecar, also recorded in ``run.json``).

A stack that is already isotropic has nothing to reconstruct: the run carries on
with the stack itself and says so in its warnings and ``run.json`` (a cohort run
should not fail a study for that). Every other reason a stack cannot be
reconstructed (two coarse axes, a missing weights file...) stops the run with the
:class:`~medrecon.superres.ReconstructError`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from medrecon.errors import InputError
from medrecon.volume import Volume

__all__ = [
    "RECONSTRUCTION_JSON",
    "SOURCE_IMAGE",
    "ReconstructOptions",
    "ReconstructedInput",
    "reconstruct_input",
    "write_reconstruction_files",
]

logger = logging.getLogger(__name__)

RECONSTRUCTION_JSON = "reconstruction.json"
SOURCE_IMAGE = "source.nii.gz"

_METHODS = ("network", "bspline", "linear")
_KINDS = ("box", "gaussian")


def _positive_or_none(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"reconstruct {name} must be a number of mm, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"reconstruct {name} must be a positive number of mm, got {value}")


@dataclass(frozen=True)
class ReconstructOptions:
    """How ``run_study(..., reconstruct=...)`` reconstructs the stack, checked when made.

    The fields are :func:`medrecon.superres.api.reconstruct`'s: ``method``
    ("network", "bspline" or "linear"), ``kind`` of slice profile ("box" or
    "gaussian"), ``thickness`` and ``spacing`` in mm (None: the header's
    thickness; the stack's in-plane spacing), ``weights`` ("default", a file, or
    None for an untrained network), ``finetune`` and ``finetune_steps``, ``seed``.
    Raises :class:`~medrecon.errors.InputError` for a bad value.
    """

    method: str = "network"
    kind: str = "box"
    thickness: float | None = None
    spacing: float | None = None
    weights: str | Path | None = "default"
    finetune: bool = True
    finetune_steps: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise InputError(f"reconstruct method {self.method!r}: choose one of {_METHODS}")
        if self.kind not in _KINDS:
            raise InputError(f"slice profile {self.kind!r}: choose one of {_KINDS}")
        _positive_or_none("thickness", self.thickness)
        _positive_or_none("spacing", self.spacing)
        if not isinstance(self.finetune, bool):
            raise InputError(f"finetune must be True or False, not {self.finetune!r}")
        for name in ("finetune_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"reconstruct {name} must be a whole number >= 0, not {value!r}")
        if self.finetune and self.finetune_steps < 1:
            raise InputError("finetune_steps must be 1 or more; use finetune=False for none")

    @classmethod
    def of(cls, value: ReconstructOptions | bool | None) -> ReconstructOptions | None:
        """``run_study``'s ``reconstruct`` argument: True means the defaults."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if not isinstance(value, cls):
            raise InputError(
                f"reconstruct must be True, False or ReconstructOptions, not {value!r}"
            )
        return value


@dataclass
class ReconstructedInput:
    """The volume to segment, and what ``run.json`` records about its reconstruction."""

    volume: Volume
    record: dict
    source: Volume | None = None
    warnings: list[str] = field(default_factory=list)


def _isotropic(volume: Volume) -> str | None:
    """Why there is nothing to reconstruct (None when the stack has a thick axis)."""
    from medrecon.superres.profile import MIN_FACTOR

    spacing = [float(s) for s in volume.spacing]
    if max(spacing) >= MIN_FACTOR * min(spacing):
        return None
    shown = "x".join(f"{s:.3g}" for s in spacing)
    return (
        f"--reconstruct: the stack's spacing {shown} mm is already isotropic (within "
        f"{MIN_FACTOR}x): nothing to reconstruct; segmented the stack as it is"
    )


def reconstruct_input(
    volume: Volume, options: ReconstructOptions, *, device: str, where: str
) -> ReconstructedInput:
    """Reconstruct ``volume`` (the chosen series); an isotropic one comes back as it is."""
    reason = _isotropic(volume)
    if reason is not None:
        logger.warning("%s: %s", where, reason)
        return ReconstructedInput(volume, {"skipped": reason}, warnings=[reason])
    from medrecon.pipeline.device import resolve_device
    from medrecon.superres.api import reconstruct

    result = reconstruct(
        [volume],
        spacing=options.spacing,
        method=options.method,
        kind=options.kind,
        thickness=options.thickness,
        weights=options.weights,
        finetune=options.finetune,
        finetune_steps=options.finetune_steps,
        device=resolve_device(device).device,
        seed=options.seed,
    )
    sidecar = result.sidecar
    for entry in sidecar.get("stacks", []):
        entry["input"] = entry.get("input") or where
    out = result.volume  # reconstruct() drops the stack's SliceThickness
    record = {"file": RECONSTRUCTION_JSON, **sidecar}
    warnings = [f"reconstruction: {w}" for w in sidecar.get("warnings", [])]
    return ReconstructedInput(out, record, source=volume, warnings=warnings)


def write_reconstruction_files(folder: Path, rec: ReconstructedInput, *, source: bool) -> list[str]:
    """Write ``reconstruction.json`` (and, with ``source``, ``source.nii.gz``) into
    ``folder``; returns the names written (none when nothing was reconstructed)."""
    if rec.source is None:
        return []
    from medrecon.atomic import atomic_write_json
    from medrecon.io.nifti import write_nifti

    sidecar = {k: v for k, v in rec.record.items() if k != "file"}
    atomic_write_json(folder / RECONSTRUCTION_JSON, sidecar)
    written = [RECONSTRUCTION_JSON]
    if source:
        write_nifti(rec.source, folder / SOURCE_IMAGE)
        written.append(SOURCE_IMAGE)
    return written
