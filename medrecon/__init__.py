"""medrecon: exact volumes from DICOM/NIfTI slice stacks, organ segmentation, Slicer outputs."""

from medrecon.errors import (
    AmbiguousInputError,
    DicomError,
    InputError,
    MedreconError,
)
from medrecon.io import load, load_all, scan
from medrecon.run import run_study
from medrecon.volume import Volume, VolumeMeta

__version__ = "0.1.0"

__all__ = [
    "AmbiguousInputError",
    "DicomError",
    "InputError",
    "MedreconError",
    "Volume",
    "VolumeMeta",
    "__version__",
    "load",
    "load_all",
    "run_study",
    "scan",
]
