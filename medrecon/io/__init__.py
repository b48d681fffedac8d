"""Loading images: DICOM folders, zips, DICOMDIRs, multi-frame files, NIfTI, NRRD, MHA/MHD.

``load`` returns one Volume; ``load_all`` every volume found; ``scan`` reads DICOM
headers only and reports the series found and the files left out, with reasons.
"""

from __future__ import annotations

from medrecon.io.api import LoadResult, load, load_all, read, scan
from medrecon.io.report import ScanReport, SeriesSummary, SkippedFile

__all__ = [
    "LoadResult",
    "ScanReport",
    "SeriesSummary",
    "SkippedFile",
    "load",
    "load_all",
    "read",
    "scan",
]
