"""Siemens mosaic: one stored image holding a grid of slices.

Facts used (Siemens CSA header, as documented by nibabel and dcm2niix): the
private tag (0019,100A) or the CSA field NumberOfImagesInMosaic gives the slice
count; tiles fill a square grid of ceil(sqrt(n)) per side in slice order;
ImagePositionPatient is the corner of the whole mosaic, so the first tile's
corner lies (mosaic size - tile size) / 2 pixels further along each in-plane
axis; slices step along the CSA SliceNormalVector by SpacingBetweenSlices.
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset

from medrecon.io.dicom.csa import csa_image_header, mosaic_count, slice_normal_vector
from medrecon.io.dicom.records import SliceHeader, with_position
from medrecon.io.dicom.values import SkipFile

__all__ = ["mosaic_tiles", "split_mosaic"]


def mosaic_tiles(ds: Dataset, rec: SliceHeader) -> list[SliceHeader]:
    """Expand one mosaic image record into one record per tile."""
    csa = csa_image_header(ds)
    n = None
    if (0x0019, 0x100A) in ds:
        n = int(ds[0x0019, 0x100A].value)
    elif csa is not None:
        n = mosaic_count(csa)
    if not n:
        raise SkipFile("Siemens mosaic without NumberOfImagesInMosaic")
    per_side = math.ceil(math.sqrt(n))
    if rec.rows % per_side or rec.cols % per_side:
        raise SkipFile(f"mosaic of {rec.rows}x{rec.cols} cannot hold {per_side}^2 tiles")
    tile_rows, tile_cols = rec.rows // per_side, rec.cols // per_side

    row_cos = np.array(rec.iop[:3])
    col_cos = np.array(rec.iop[3:])
    normal = np.cross(row_cos, col_cos)
    if csa is not None:
        csa_normal = slice_normal_vector(csa)
        if csa_normal is not None and np.linalg.norm(csa_normal) > 0.5:
            normal = np.asarray(csa_normal, dtype=float) / np.linalg.norm(csa_normal)
    step = rec.spacing_between_slices or rec.slice_thickness or 1.0
    row_sp, col_sp = rec.pixel_spacing
    first = (
        np.array(rec.ipp)
        + row_cos * col_sp * (rec.cols - tile_cols) / 2.0
        + col_cos * row_sp * (rec.rows - tile_rows) / 2.0
    )
    return [
        with_position(
            rec,
            tuple(float(v) for v in first + k * step * normal),  # type: ignore[arg-type]
            frame=k,
            kind="mosaic",
            rows=tile_rows,
            cols=tile_cols,
            mosaic_tiles=per_side,
        )
        for k in range(n)
    ]


def split_mosaic(image: np.ndarray, per_side: int, n_tiles: int) -> np.ndarray:
    """Cut a 2D mosaic into an ``(n_tiles, rows, cols)`` array, row-major tile order."""
    rows, cols = image.shape[0] // per_side, image.shape[1] // per_side
    grid = image.reshape(per_side, rows, per_side, cols).transpose(0, 2, 1, 3)
    return grid.reshape(per_side * per_side, rows, cols)[:n_tiles]
