"""Colour (RGB) image slices: which are accepted, and how they become a Volume.

dcm2niix writes colour series as RGB24 NIfTI. medrecon keeps the three samples
as a trailing axis: a colour volume's array is ``(i, j, k, 3)`` uint8 with
``meta.frame_axis == "rgb"``, written as NIfTI RGB24 by ``medrecon convert``.
YBR_FULL / YBR_FULL_422 (and the JPEG 2000 YBR_RCT/ICT) pixels are decoded to
RGB by pydicom; PlanarConfiguration 0 (RGBRGB...) and 1 (RR..GG..BB..) are
both unpacked by pydicom to ``(rows, cols, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

__all__ = ["COLOUR_AXIS", "COLOUR_PHOTOMETRIC", "check_colour", "stack_colour"]

COLOUR_AXIS = "rgb"
COLOUR_PHOTOMETRIC = frozenset(
    {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"}
)


def check_colour(ds: Dataset) -> None:
    """Raise SkipFile for a colour layout that is not loaded (greyscale passes)."""
    from medrecon.io.dicom.values import SkipFile

    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 1:
        return
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if samples != 3 or photometric not in COLOUR_PHOTOMETRIC:
        raise SkipFile(
            f"colour image with SamplesPerPixel {samples} and PhotometricInterpretation "
            f"{photometric or 'missing'} (only 3-sample RGB/YBR colour is loaded)"
        )
    if int(ds.get("BitsAllocated", 8) or 8) != 8:
        raise SkipFile(
            f"colour image with {ds.get('BitsAllocated')} bits per sample "
            "(colour is loaded as 8-bit RGB, as dcm2niix's RGB24)"
        )


def stack_colour(slices: Sequence[np.ndarray], where: str) -> np.ndarray:
    """``(N, rows, cols, 3)`` uint8 from decoded RGB slices (no rescale: RGB has none)."""
    from medrecon.errors import DecodeError

    first = slices[0]
    for arr in slices:
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape != first.shape:
            raise DecodeError(
                f"{where}: a colour slice decoded to shape {arr.shape}, expected "
                f"{first.shape[:2]} x 3 samples; the file's colour layout is inconsistent"
            )
    out = np.empty((len(slices), *first.shape), dtype=np.uint8)
    for k, arr in enumerate(slices):
        out[k] = arr  # pydicom gives uint8 for 8-bit samples
    return out
