"""Case builders for ``bench_generalise.py``: limited axial fields of view, thick
slices, contrast phases and label maps remapped by name.

Pure functions on :class:`medrecon.Volume` / NumPy arrays, importable on their own
(``tests/test_bench_generalise.py`` checks that they are exact).

* :func:`cut_slab` keeps native voxels: slab voxel ``(i, j, k)`` is source voxel
  ``(i, j, k0 + k)`` along the axial axis, with the affine's origin moved to the RAS
  position of the slab's first voxel, so every voxel stays where it was in the patient
  (what a real scan with a shorter field of view gives).
* :func:`thick_slices` simulates thicker slices: Gaussian slice profile of FWHM = the
  new spacing along the axial axis, then linear sampling at the new slice centres;
  in-plane untouched. The new grid spans the source's extent along that axis (same
  centre, ``round(extent / S)`` slices of ``S`` mm). Labels are sampled nearest-neighbour
  at the same centres (:func:`thick_label_slices`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medrecon.volume import Volume

__all__ = [
    "FWHM_TO_SIGMA",
    "axial_axis",
    "cut_slab",
    "read_label_names",
    "remap_by_name",
    "slab_starts",
    "thick_grid",
    "thick_label_slices",
    "thick_slices",
]

#: Gaussian sigma = FWHM * this (1 / (2 sqrt(2 ln 2))).
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def axial_axis(affine: np.ndarray) -> int:
    """The voxel axis (0, 1 or 2) that runs closest to the patient's S-I direction."""
    direction = np.asarray(affine, dtype=np.float64)[:3, :3]
    direction = direction / np.linalg.norm(direction, axis=0)
    return int(np.argmax(np.abs(direction[2])))


def _take(array: np.ndarray, axis: int, index) -> np.ndarray:
    sl = [slice(None)] * array.ndim
    sl[axis] = index
    return array[tuple(sl)]


def cut_slab(volume: Volume, start: int, stop: int, *, axis: int | None = None) -> Volume:
    """Slices ``[start, stop)`` of ``volume`` along ``axis`` (default: the axial one),
    native voxels, the affine's origin shifted to the slab's first voxel."""
    axis = axial_axis(volume.affine) if axis is None else axis
    n = volume.spatial_shape[axis]
    if not 0 <= start < stop <= n:
        raise ValueError(f"slab [{start}, {stop}) outside 0..{n} along axis {axis}")
    first = np.zeros(3)
    first[axis] = start
    affine = volume.affine.copy()
    affine[:3, 3] = volume.voxel_to_ras(first)[0]
    array = np.ascontiguousarray(_take(volume.array, axis, slice(start, stop)))
    return Volume(array, affine, volume.meta.copy())


def slab_starts(n_slices: int, width: int, step: int) -> list[int]:
    """Start indices of the ``width``-slice slabs at every ``step`` slices that fit in
    ``n_slices`` (none when the volume is thinner than a slab)."""
    if width > n_slices:
        return []
    return list(range(0, n_slices - width + 1, max(1, step)))


def thick_grid(n: int, spacing: float, thickness: float) -> tuple[np.ndarray, int]:
    """(fractional source indices of the new slice centres, new slice count) for
    ``n`` source slices of ``spacing`` mm resampled to ``thickness`` mm: the same
    centre, ``round(n * spacing / thickness)`` slices (at least one)."""
    m = max(1, round(n * spacing / thickness))
    centre = (n - 1) / 2.0
    step = thickness / spacing
    return centre + (np.arange(m) - (m - 1) / 2.0) * step, m


def _thick_affine(volume: Volume, axis: int, positions: np.ndarray, step: float) -> np.ndarray:
    first = np.zeros(3)
    first[axis] = positions[0]
    affine = volume.affine.copy()
    affine[:3, axis] = affine[:3, axis] * step
    affine[:3, 3] = volume.voxel_to_ras(first)[0]
    return affine


def thick_slices(
    volume: Volume, thickness: float, *, axis: int | None = None
) -> tuple[Volume, np.ndarray]:
    """``volume`` as slices ``thickness`` mm apart with a Gaussian slice profile of
    FWHM ``thickness`` (blur along the axis, then linear sampling; edges held), float32.
    Returns the volume and the fractional source indices of its slices."""
    from scipy.ndimage import gaussian_filter1d

    axis = axial_axis(volume.affine) if axis is None else axis
    spacing = volume.spacing[axis]
    n = volume.spatial_shape[axis]
    positions, _ = thick_grid(n, spacing, thickness)
    sigma = thickness * FWHM_TO_SIGMA / spacing
    blurred = gaussian_filter1d(
        volume.array.astype(np.float32), sigma, axis=axis, mode="nearest", truncate=4.0
    )
    lo = np.clip(np.floor(positions).astype(int), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    w = np.clip(positions - lo, 0.0, 1.0).astype(np.float32)
    shape = [1] * blurred.ndim
    shape[axis] = len(positions)
    w = w.reshape(shape)
    a, b = _take(blurred, axis, lo), _take(blurred, axis, hi)
    out = np.ascontiguousarray((a * (1.0 - w) + b * w).astype(np.float32))
    affine = _thick_affine(volume, axis, positions, thickness / spacing)
    return Volume(out, affine, volume.meta.copy()), positions


def thick_label_slices(labels: Volume, positions: np.ndarray, thickness: float) -> Volume:
    """``labels`` sampled nearest-neighbour at the slice positions of :func:`thick_slices`."""
    axis = axial_axis(labels.affine)
    n = labels.spatial_shape[axis]
    nearest = np.clip(np.floor(np.asarray(positions) + 0.5).astype(int), 0, n - 1)
    out = np.ascontiguousarray(_take(labels.array, axis, nearest))
    affine = _thick_affine(labels, axis, positions, thickness / labels.spacing[axis])
    return Volume(out, affine, labels.meta.copy())


def read_label_names(path: str | Path) -> dict[int, str]:
    """``labels.json`` (value -> name) as ``{int: str}``."""
    return {int(k): str(v) for k, v in json.loads(Path(path).read_text()).items()}


def remap_by_name(
    source: np.ndarray, source_names: Mapping[int, str], target: Sequence[tuple[int, str]]
) -> np.ndarray:
    """``source`` (values named by ``source_names``) as a map of ``target``'s
    ``(value, name)`` pairs, matched by name; every other structure is 0."""
    by_name = {name: value for value, name in source_names.items()}
    lut = np.zeros(max(int(source.max(initial=0)), max(source_names, default=0)) + 1, np.uint16)
    for value, name in target:
        if name in by_name:
            lut[by_name[name]] = value
    dtype = np.uint8 if max((v for v, _ in target), default=0) < 256 else np.uint16
    return lut[source].astype(dtype)
