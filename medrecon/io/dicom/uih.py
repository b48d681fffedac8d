"""UIH "VFRAME" grids: one stored image holding the slices of a volume.

Facts used (UIH's private tags as documented by dcm2niix, UIH/README.md, and
its ``nii_demosaic``): ImageType contains ``VFRAME``; (0065,1050) "MR Number Of
Slice In Volume" gives the slice count n; the tiles fill a grid of
ceil(sqrt(n)) columns and ceil(n / columns) rows, in row-major slice order
(unlike Siemens, the grid need not be square); the private sequence (0065,1051)
"MR VFrame Sequence" holds one item per slice with its ImagePositionPatient.
Without usable per-slice positions, the file's ImagePositionPatient is the first
tile's corner (dcm2niix applies no mosaic offset to UIH grids) and slices step
along the slice normal by SpacingBetweenSlices.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset

from medrecon.io.dicom.records import SliceHeader, with_position
from medrecon.io.dicom.values import SkipFile

__all__ = ["grid_tiles", "split_grid", "uih_slice_count", "vframe_first_position"]

_N_SLICES = (0x0065, 0x1050)  # DS
_VFRAME_SEQUENCE = (0x0065, 0x1051)  # SQ, one item per slice
_SLICE_NORMAL = (0x0065, 0x1014)  # DS 3


def _number(value) -> float | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip("\x00 ")
    try:
        out = float(value[0] if isinstance(value, (list, tuple)) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if math.isfinite(out) else None


def uih_slice_count(ds: Dataset) -> int | None:
    """Slices in a UIH grid, from (0065,1050)."""
    if _N_SLICES not in ds:
        return None
    n = _number(ds[_N_SLICES].value)
    return int(n) if n is not None and n >= 1 else None


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols  # (tile rows, tile columns) of the grid


def _item_positions(ds: Dataset, n: int) -> list[tuple[float, float, float]] | None:
    if _VFRAME_SEQUENCE not in ds:
        return None
    items = ds[_VFRAME_SEQUENCE].value
    try:
        if len(items) != n:
            return None
        out = []
        for item in items:
            ipp = [float(v) for v in item.ImagePositionPatient]
            if len(ipp) != 3 or not all(math.isfinite(v) for v in ipp):
                return None
            out.append(tuple(ipp))
    except (AttributeError, TypeError, ValueError):  # unparsed (UN) or incomplete items
        return None
    return out  # type: ignore[return-value]


def vframe_first_position(ds: Dataset) -> list[float] | None:
    """The first slice's position of a UIH VFRAME file that has no top-level one."""
    image_type = {str(v).upper() for v in (ds.get("ImageType") or [])}
    if "VFRAME" not in image_type or "UIH" not in str(ds.get("Manufacturer", "")).upper():
        return None
    n = uih_slice_count(ds)
    positions = _item_positions(ds, n) if n else None
    return list(positions[0]) if positions else None


def grid_tiles(ds: Dataset, rec: SliceHeader) -> list[SliceHeader]:
    """One record per slice of a UIH VFRAME grid (kind "grid")."""
    n = uih_slice_count(ds)
    if not n:
        raise SkipFile("UIH VFRAME image without its slice count (0065,1050)")
    grid_rows, grid_cols = _grid(n)
    if rec.rows % grid_rows or rec.cols % grid_cols:
        raise SkipFile(
            f"UIH VFRAME image of {rec.rows}x{rec.cols} cannot hold a {grid_rows}x{grid_cols} "
            f"grid of {n} slices"
        )
    tile_rows, tile_cols = rec.rows // grid_rows, rec.cols // grid_cols
    positions = _item_positions(ds, n)
    vendor = rec.vendor
    if positions is None:
        iop = np.array(rec.iop)
        normal = np.cross(iop[:3], iop[3:])
        if _SLICE_NORMAL in ds:
            try:
                given = np.array([float(v) for v in ds[_SLICE_NORMAL].value])
                if given.shape == (3,) and np.linalg.norm(given) > 0.5:
                    normal = given / np.linalg.norm(given)
            except (TypeError, ValueError):
                pass
        step = rec.spacing_between_slices or rec.slice_thickness or 1.0
        positions = [
            tuple(float(v) for v in np.array(rec.ipp) + k * step * normal) for k in range(n)
        ]
        vendor = replace(
            vendor,
            note="UIH VFRAME grid without per-slice positions (0065,1051): positions stepped "
            f"from ImagePositionPatient by {step:g} mm along the slice normal",
        )
    tiles = [
        with_position(
            rec,
            positions[k],  # type: ignore[arg-type]
            frame=k,
            kind="grid",
            rows=tile_rows,
            cols=tile_cols,
            mosaic_tiles=grid_cols,
            vendor=vendor,
        )
        for k in range(n)
    ]
    return tiles


def split_grid(image: np.ndarray, tile_rows: int, tile_cols: int, n_tiles: int) -> np.ndarray:
    """Cut a 2D grid image into ``(n_tiles, tile_rows, tile_cols)``, row-major tile order."""
    grid_rows, grid_cols = image.shape[0] // tile_rows, image.shape[1] // tile_cols
    tiles = image.reshape(grid_rows, tile_rows, grid_cols, tile_cols).transpose(0, 2, 1, 3)
    return tiles.reshape(grid_rows * grid_cols, tile_rows, tile_cols)[:n_tiles]
