"""Per-label measurements: volume, surface area, intensity, centroid, bounding box.

One row per label *present* in the map (labels of the table with no voxel are left
out unless ``include_absent=True``, which lists them with a zero count and empty
measurements), in ascending label value. Rows are flat dicts with the keys of
:data:`COLUMNS`, so the CSV and the JSON hold the same values.

Methods (see docs/outputs.md):

* volume: voxel count x voxel volume (``|det|`` of the affine's 3x3 part), in mL;
* surface area: marching cubes (level 0.5) on the label's binary mask, cropped to its
  bounding box and padded by one voxel so the mesh closes; the mesh is then Taubin
  smoothed (``smoothing_iterations`` passes, lambda 0.5 / mu -0.53) and its vertices
  mapped to millimetres through the affine (so anisotropic, oblique and sheared grids
  are measured correctly). Unsmoothed marching cubes on a voxel mask overestimates a
  sphere's area by about 9 %; after smoothing the error is under 1 % for a sphere of
  radius 20 voxels and about 2.5 % at 0.8 x 0.8 x 2 mm;
* intensity: mean, standard deviation (population), min and max of the image under the
  label, accumulated in float64 (HU for CT);
* centroid: mean voxel position, in RAS and LPS millimetres;
* bounding box: first and last voxel index along i, j, k (inclusive) and the RAS
  millimetre box enclosing those voxels' outer faces;
* check: the pipeline's ``expected_ml`` range for the label and, when the volume lies
  outside it, the warning (:func:`medrecon.labels.plausibility.volume_check`), else empty.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrecon.atomic import atomic_write_json, atomic_write_text
from medrecon.errors import InputError
from medrecon.volume import Volume

if TYPE_CHECKING:  # pragma: no cover - typing only
    from medrecon.labels import Label

__all__ = ["COLUMNS", "UNITS", "label_statistics", "mesh_area_mm2", "write_stats"]

logger = logging.getLogger(__name__)

_XYZ = ("x", "y", "z")
_IJK = ("i", "j", "k")

#: Keys of every row, in CSV column order.
COLUMNS: tuple[str, ...] = (
    "value",
    "name",
    "voxel_count",
    "volume_ml",
    "surface_area_mm2",
    "mean",
    "std",
    "min",
    "max",
    *(f"centroid_ras_{a}" for a in _XYZ),
    *(f"centroid_lps_{a}" for a in _XYZ),
    *(f"bbox_{end}_{a}" for end in ("min", "max") for a in _IJK),
    *(f"bbox_ras_{end}_{a}" for end in ("min", "max") for a in _XYZ),
    "expected_min_ml",
    "expected_max_ml",
    "check",
)

#: Unit of each measured column (intensity units come from the image: HU for CT).
UNITS: dict[str, str] = {
    "voxel_count": "voxels",
    "volume_ml": "mL",
    "expected_min_ml": "mL",
    "expected_max_ml": "mL",
    "surface_area_mm2": "mm^2",
    **{f"centroid_{s}_{a}": "mm" for s in ("ras", "lps") for a in _XYZ},
    **{f"bbox_{end}_{a}": "voxel index" for end in ("min", "max") for a in _IJK},
    **{f"bbox_ras_{end}_{a}": "mm" for end in ("min", "max") for a in _XYZ},
}


def label_statistics(
    labels: Volume,
    image: Volume | None,
    label_table: Sequence[Label],
    *,
    include_absent: bool = False,
    smoothing_iterations: int = 20,
) -> list[dict[str, Any]]:
    """One row of measurements per label (see the module notes for the methods)."""
    from scipy import ndimage

    array = np.asarray(labels.array)
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"label map must be 3D integer, got {array.shape} {array.dtype}")
    intensities = _intensity_array(image, labels)
    counts = np.bincount(array.ravel(), minlength=max(lb.value for lb in label_table) + 1)
    boxes = ndimage.find_objects(array)
    named = {lb.value for lb in label_table}
    unnamed = [int(v) for v in np.flatnonzero(counts[1:]) + 1 if int(v) not in named]
    if unnamed:
        logger.warning("label values %s are not in the label table; not measured", unnamed)
    voxel_ml = labels.voxel_ml
    rows = []
    for label in sorted(label_table, key=lambda lb: lb.value):
        count = int(counts[label.value]) if label.value < counts.size else 0
        if count == 0:
            if include_absent:
                rows.append(_empty_row(label))
            continue
        box = boxes[label.value - 1]
        mask = array[box] == label.value
        row: dict[str, Any] = {"value": label.value, "name": label.name, "voxel_count": count}
        row["volume_ml"] = count * voxel_ml
        row["surface_area_mm2"] = _surface_area(mask, labels.affine, smoothing_iterations)
        row.update(_intensity_row(intensities, box, mask))
        row.update(_position_rows(labels, box, mask, count))
        row.update(_check_row(label, row["volume_ml"], box, array.shape))
        rows.append({key: row.get(key) for key in COLUMNS})
    logger.debug("measured %d labels", len(rows))
    return rows


def _check_row(label: Label, volume_ml: float, box: tuple[slice, ...], shape) -> dict[str, Any]:
    """The pipeline's expected volume range and, when outside it, the warning."""
    from medrecon.labels.plausibility import volume_check

    expected = getattr(label, "expected_ml", None)
    at_edge = any(b.start == 0 or b.stop == n for b, n in zip(box, shape))
    return {
        "expected_min_ml": expected[0] if expected else None,
        "expected_max_ml": expected[1] if expected else None,
        "check": volume_check(label.name, volume_ml, expected, at_edge),
    }


def _intensity_array(image: Volume | None, labels: Volume) -> np.ndarray | None:
    if image is None:
        return None
    if image.spatial_shape != labels.spatial_shape or image.array.ndim != 3:
        raise InputError(
            f"image {image.shape} and label map {labels.shape} are not on the same 3D grid; "
            "measure intensities on the image the labels were made from"
        )
    if not np.allclose(image.affine, labels.affine, atol=1e-4):
        raise InputError(
            "image and label map have different affines; measure intensities on the "
            "image the labels were made from"
        )
    return np.asarray(image.array)


def _empty_row(label: Label) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS)
    row.update(value=label.value, name=label.name, voxel_count=0, volume_ml=0.0)
    row["surface_area_mm2"] = 0.0
    return row


def _intensity_row(
    intensities: np.ndarray | None, box: tuple[slice, ...], mask: np.ndarray
) -> dict[str, float]:
    if intensities is None:
        return {}
    values = intensities[box][mask].astype(np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _position_rows(
    labels: Volume, box: tuple[slice, ...], mask: np.ndarray, count: int
) -> dict[str, float | int]:
    """Centroid (from the mask's projections, no index arrays) and bounding boxes."""
    start = np.array([s.start for s in box], dtype=np.float64)
    centre = np.empty(3)
    for axis in range(3):
        profile = mask.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
        centre[axis] = start[axis] + float(profile @ np.arange(profile.size)) / count
    ras = labels.voxel_to_ras(centre)[0]
    lps = np.array([-ras[0], -ras[1], ras[2]])
    first = [s.start for s in box]
    last = [s.stop - 1 for s in box]
    corners = np.array(
        [[(first, last)[c >> a & 1][a] + (0.5 if c >> a & 1 else -0.5) for a in range(3)]
         for c in range(8)]
    )  # fmt: skip
    corners_ras = labels.voxel_to_ras(corners)
    out: dict[str, float | int] = {}
    for a, axis in enumerate(_XYZ):
        out[f"centroid_ras_{axis}"] = float(ras[a])
        out[f"centroid_lps_{axis}"] = float(lps[a])
        out[f"bbox_ras_min_{axis}"] = float(corners_ras[:, a].min())
        out[f"bbox_ras_max_{axis}"] = float(corners_ras[:, a].max())
    for a, axis in enumerate(_IJK):
        out[f"bbox_min_{axis}"] = int(first[a])
        out[f"bbox_max_{axis}"] = int(last[a])
    return out


def _surface_area(mask: np.ndarray, affine: np.ndarray, iterations: int) -> float:
    from skimage.measure import marching_cubes

    padded = np.pad(mask, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(padded, level=0.5)
    verts = _taubin_smooth(verts, faces, iterations)
    return mesh_area_mm2(verts @ affine[:3, :3].T, faces)  # translation does not matter


def mesh_area_mm2(verts: np.ndarray, faces: np.ndarray) -> float:
    """Total area of a triangle mesh (vertices in mm)."""
    a, b, c = (verts[faces[:, n]] for n in range(3))
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def _taubin_smooth(verts: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Taubin lambda/mu smoothing with uniform weights: removes the voxel staircase
    without the shrinkage of plain Laplacian smoothing."""
    if iterations <= 0:
        return verts
    from scipy import sparse

    n = len(verts)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    adjacency = sparse.coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)
    ).tocsr()
    adjacency.data[:] = 1.0  # an edge shared by two faces counts once
    mean_of_neighbours = sparse.diags(1.0 / np.asarray(adjacency.sum(axis=1)).ravel()) @ adjacency
    out = verts.astype(np.float64)
    for _ in range(iterations):
        out = out + 0.5 * (mean_of_neighbours @ out - out)
        out = out - 0.53 * (mean_of_neighbours @ out - out)
    return out


def write_stats(
    csv_path: str | os.PathLike[str],
    json_path: str | os.PathLike[str],
    rows: Iterable[dict[str, Any]],
    *,
    meta: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``rows`` as CSV (header = :data:`COLUMNS`) and JSON, each atomically.

    The JSON is ``{"meta": meta, "units": UNITS, "labels": rows}``; missing values are
    empty CSV cells and JSON nulls. Floats are written at full precision.
    """
    rows = [dict(row) for row in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in COLUMNS})
    atomic_write_text(csv_path, buffer.getvalue())
    document = {"meta": dict(meta or {}), "units": UNITS, "labels": rows}
    atomic_write_json(json_path, document)
    return Path(csv_path), Path(json_path)
