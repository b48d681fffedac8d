"""medrecon: exact volumes from DICOM/NIfTI slice stacks, organ segmentation, Slicer outputs."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from medrecon._version import __version__
from medrecon.errors import (
    AmbiguousInputError,
    DicomError,
    InputError,
    MedreconError,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from medrecon.io import load, load_all, scan
    from medrecon.models.ref import ModelRef
    from medrecon.models.segment import segment
    from medrecon.study.output_options import OutputOptions
    from medrecon.study.runner import run_study
    from medrecon.superres.api import reconstruct
    from medrecon.volume import Volume, VolumeMeta

__all__ = [
    "AmbiguousInputError",
    "DicomError",
    "InputError",
    "MedreconError",
    "ModelRef",
    "OutputOptions",
    "Volume",
    "VolumeMeta",
    "__version__",
    "load",
    "load_all",
    "reconstruct",
    "run_study",
    "scan",
    "segment",
]

# Imported on first use, so `import medrecon` (and every CLI command's start-up)
# does not pay for numpy, pydicom, nibabel... before it needs them.
_LAZY = {
    "load": "medrecon.io",
    "load_all": "medrecon.io",
    "scan": "medrecon.io",
    "run_study": "medrecon.study.runner",
    "reconstruct": "medrecon.superres.api",
    "segment": "medrecon.models.segment",
    "ModelRef": "medrecon.models.ref",
    "OutputOptions": "medrecon.study.output_options",
    "Volume": "medrecon.volume",
    "VolumeMeta": "medrecon.volume",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medrecon' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
