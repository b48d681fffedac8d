"""Label maps to evaluate: files, their label tables, and grid matching.

A label map arrives as a NIfTI file with a label table beside it, a Slicer
``.seg.nrrd``, or a medrecon output folder. Whatever the source, it becomes a
:class:`LabelMap`: an integer Volume plus ``value -> name`` (or no names).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrecon.errors import FormatError, InputError
from medrecon.volume import Volume

__all__ = [
    "LabelMap",
    "find_label_table",
    "grid_mapping",
    "on_reference_grid",
    "read_label_map",
    "read_label_table",
    "resample_nearest",
]

logger = logging.getLogger(__name__)

_NIFTI = (".nii.gz", ".nii")
_SEG_NRRD = ".seg.nrrd"
#: Affines closer than this (mm) are the same grid: no resampling at all.
_SAME_GRID_MM = 1e-4
#: Voxel centres closer than this (in voxels) count as coinciding.
_ALIGN_TOL = 1e-4
#: Reference voxels resampled per slab, to bound the coordinate arrays' memory.
_SLAB_VOXELS = 4_000_000


@dataclass(frozen=True)
class LabelMap:
    """An integer label Volume, its ``value -> name`` table (None: no names) and its source."""

    volume: Volume
    names: dict[int, str] | None
    source: str


def _nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in _NIFTI:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_label_table(image: str | os.PathLike[str]) -> Path | None:
    """The label table beside a NIfTI label map, or None.

    Looked for in this order: ``<stem>.labels.csv`` (Slicer's CSV table, which keeps
    names with spaces), ``<stem>.ctbl``, ``<stem>.labels.json``, then ``labels.json``
    in the same folder.
    """
    image = Path(image)
    stem = _nifti_stem(image)
    candidates = [f"{stem}.labels.csv", f"{stem}.ctbl", f"{stem}.labels.json", "labels.json"]
    for name in candidates:
        path = image.with_name(name)
        if path.is_file():
            return path
    return None


def _int_value(raw: object, path: Path, where: str) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise FormatError(
            f"{path}: {where}: label value {raw!r} is not an integer; a label table maps "
            "integer values to names"
        ) from None
    return value


def _read_json_table(path: Path) -> dict[int, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable JSON label table ({exc})") from exc
    if isinstance(data, dict):
        return {_int_value(k, path, f"key {k!r}"): str(v) for k, v in data.items()}
    if isinstance(data, list) and all(isinstance(x, dict) and "value" in x for x in data):
        return {
            _int_value(x["value"], path, f"entry {i}"): str(x["name"]) for i, x in enumerate(data)
        }
    raise FormatError(
        f'{path}: a JSON label table is an object {{"1": "spleen", ...}} or a list of '
        '{"value": 1, "name": "spleen"} entries'
    )


def read_label_table(path: str | os.PathLike[str]) -> dict[int, str]:
    """``value -> name`` from a Slicer ``.ctbl`` or ``.csv`` colour table or a ``.json`` map.

    The JSON form is ``{"1": "spleen", ...}`` (as TotalSegmentator's ``labels.json``).
    Value 0 (background) is left out.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"label table not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".ctbl", ".csv"):
        from medrecon.export.colortable import read_color_table

        table = read_color_table(path)
    elif suffix == ".json":
        table = _read_json_table(path)
    else:
        raise FormatError(f"{path}: unknown label table type; use .ctbl, .csv or .json")
    return {int(v): str(n) for v, n in table.items() if int(v) != 0}


def _as_label_volume(vol: Volume, source: str) -> Volume:
    """Integer 3D labels; a float map is accepted only when every value is whole."""
    array = vol.array
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise FormatError(f"{source}: a label map must be 3D, got shape {vol.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.bool_):
            array = array.astype(np.uint8)
        elif not np.all(np.mod(array, 1) == 0):
            raise FormatError(
                f"{source}: voxel values are not whole numbers, so this is an image, not a "
                "label map; give the segmentation file"
            )
        else:
            array = array.astype(np.int32)
    if array.size and array.min() < 0:
        raise FormatError(
            f"{source}: holds negative values (min {array.min()}), so this is an image such "
            "as a CT, not a label map; give the segmentation file"
        )
    return Volume(np.asarray(array), vol.affine, vol.meta)


def _read_nifti_labels(path: Path, table: Path | None) -> LabelMap:
    from medrecon.io.nifti import read_nifti

    vol = _as_label_volume(read_nifti(path), str(path))
    table = table if table is not None else find_label_table(path)
    names = read_label_table(table) if table is not None else None
    logger.debug("%s: label table %s", path, table or "none")
    return LabelMap(vol, names, str(path))


def _read_seg_nrrd_labels(path: Path) -> LabelMap:
    from medrecon.export.segnrrd import read_seg_nrrd

    vol, labels = read_seg_nrrd(path)
    if isinstance(labels, dict):
        names = {int(v): str(n) for v, n in labels.items()}
    else:  # Label-like records
        names = {int(lab.value): str(lab.name) for lab in labels}
    names.pop(0, None)
    return LabelMap(_as_label_volume(vol, str(path)), names, str(path))


def _read_output_folder(folder: Path) -> LabelMap:
    from medrecon.study.outputs import LABELS, SEG_NRRD

    if (folder / LABELS).is_file():
        return _read_nifti_labels(folder / LABELS, None)
    if (folder / SEG_NRRD).is_file():
        return _read_seg_nrrd_labels(folder / SEG_NRRD)
    raise InputError(
        f"{folder}: no labels.nii.gz or segmentation.seg.nrrd in this folder; give a medrecon "
        "output folder, a NIfTI label map or a .seg.nrrd file"
    )


def read_label_map(
    path: str | os.PathLike[str], *, table: str | os.PathLike[str] | None = None
) -> LabelMap:
    """Read a label map from a NIfTI file, a ``.seg.nrrd`` or a medrecon output folder.

    ``table`` names the label table of a NIfTI file; by default it is found beside
    the file (:func:`find_label_table`). No table means no names (values only).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_output_folder(path)
    lower = path.name.lower()
    if lower.endswith(_SEG_NRRD):
        return _read_seg_nrrd_labels(path)
    if lower.endswith(_NIFTI):
        return _read_nifti_labels(path, Path(table) if table is not None else None)
    raise FormatError(
        f"{path}: unsupported label map; give a .nii/.nii.gz file, a .seg.nrrd or a medrecon "
        "output folder"
    )


def grid_mapping(source: Volume, target: Volume) -> tuple[np.ndarray, bool]:
    """``(M, aligned)``: M maps target voxel indices to source voxel indices.

    ``aligned`` is True when every target voxel centre falls on a source voxel centre
    (a flip/permutation and whole-voxel shift), so nearest-neighbour mapping is exact.
    """
    m = np.linalg.inv(source.affine) @ target.affine
    rot, shift = m[:3, :3], m[:3, 3]
    is_perm = np.allclose(np.abs(rot).sum(axis=0), 1, atol=_ALIGN_TOL) and np.allclose(
        rot, np.round(rot), atol=_ALIGN_TOL
    )
    aligned = bool(is_perm and np.allclose(shift, np.round(shift), atol=_ALIGN_TOL))
    return m, aligned


def resample_nearest(source: Volume, target: Volume, fill: int = 0) -> np.ndarray:
    """``source`` labels at ``target``'s voxel centres (nearest neighbour, in RAS mm).

    Target voxels outside the source grid get ``fill``. Works slab by slab along the
    target's last axis so memory stays bounded on large grids.
    """
    m, _ = grid_mapping(source, target)
    ni, nj, nk = target.spatial_shape
    src = source.array
    out = np.full((ni, nj, nk), fill, dtype=src.dtype)
    ii, jj = np.meshgrid(np.arange(ni, dtype=np.float64), np.arange(nj), indexing="ij")
    base = [m[a, 0] * ii + m[a, 1] * jj + m[a, 3] for a in range(3)]
    step = max(1, _SLAB_VOXELS // max(1, ni * nj))
    for k0 in range(0, nk, step):
        ks = np.arange(k0, min(nk, k0 + step), dtype=np.float64)
        # floor(x + 0.5): ties resolve the same way everywhere, unlike banker's rounding.
        idx = [np.floor(base[a][..., None] + m[a, 2] * ks + 0.5).astype(np.int64) for a in range(3)]
        inside = np.ones(idx[0].shape, dtype=bool)
        for a in range(3):
            inside &= (idx[a] >= 0) & (idx[a] < src.shape[a])
        slab = np.full(idx[0].shape, fill, dtype=src.dtype)
        slab[inside] = src[idx[0][inside], idx[1][inside], idx[2][inside]]
        out[:, :, k0 : k0 + len(ks)] = slab
    return out


def on_reference_grid(pred: LabelMap, ref: LabelMap, warn: list[str]) -> tuple[np.ndarray, bool]:
    """The prediction's labels on the reference grid, and whether that needed resampling.

    Same grid (affines within 1e-4 mm): the array as it is. A flip/permutation of the
    same voxel centres (an LPS copy, say): reordered exactly, silently. Anything else:
    nearest neighbour in patient space, with a warning appended to ``warn``.
    """
    pv, rv = pred.volume, ref.volume
    if pv.spatial_shape == rv.spatial_shape and np.allclose(
        pv.affine, rv.affine, atol=_SAME_GRID_MM
    ):
        return pv.array, False
    m, aligned = grid_mapping(pv, rv)
    on_ref = resample_nearest(pv, rv, fill=0)
    covers = _covers(m, rv.spatial_shape, pv.spatial_shape)
    if aligned and covers:
        # A flip/permutation of the same voxels (e.g. an LPS copy): exact, nothing to warn about.
        logger.info("%s: reoriented onto the reference grid (voxel centres coincide)", pred.source)
        return on_ref, False
    detail = (
        f"prediction {pv.spatial_shape} at {_mm(pv.spacing)} mm, reference {rv.spatial_shape} "
        f"at {_mm(rv.spacing)} mm"
    )
    how = "voxel centres coincide" if aligned else "nearest neighbour"
    outside = "" if covers else "; reference voxels outside the prediction count as background"
    warn.append(
        f"grids differ ({detail}): prediction resampled onto the reference grid ({how}){outside}"
    )
    return on_ref, True


def _covers(m: np.ndarray, ref_shape: Sequence[int], pred_shape: Sequence[int]) -> bool:
    """Whether every reference voxel centre (mapped by ``m``) lies within the prediction grid."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in ref_shape], indexing="ij")).reshape(3, -1)
    idx = m[:3, :3] @ corners + m[:3, 3:4]
    upper = np.asarray(pred_shape)[:, None] - 0.5
    return bool(np.all(idx >= -0.5) and np.all(idx < upper))


def _mm(spacing: Sequence[float]) -> str:
    return "x".join(f"{s:.4g}" for s in spacing)
