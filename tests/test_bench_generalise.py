"""The case builders of benchmarks/bench_generalise.py are exact: a slab keeps every
voxel where it was, a thick-slice grid spans the source with the new spacing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from medrecon.volume import Volume

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "generalise_cases.py"
_spec = importlib.util.spec_from_file_location("generalise_cases", _PATH)
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def _oblique_affine(spacing=(0.8, 1.1, 3.0), axial_first=False) -> np.ndarray:
    """LPS-like (i -> L, j -> P), slightly rotated about S, slices along S (or along i)."""
    a = np.deg2rad(7.0)
    rot = np.array([[-np.cos(a), np.sin(a), 0.0], [-np.sin(a), -np.cos(a), 0.0], [0, 0, 1.0]])
    if axial_first:
        rot = rot[:, [2, 0, 1]]
    affine = np.eye(4)
    affine[:3, :3] = rot * np.asarray(spacing)
    affine[:3, 3] = (12.5, -40.0, 88.0)
    return affine


def _volume(shape=(9, 8, 23), axial_first=False) -> Volume:
    rng = np.random.default_rng(0)
    spacing = (3.0, 0.8, 1.1) if axial_first else (0.8, 1.1, 3.0)
    arr = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    return Volume(arr, _oblique_affine(spacing, axial_first))


@pytest.mark.parametrize("axial_first", [False, True])
def test_slab_keeps_voxel_positions_and_values(axial_first):
    shape = (23, 9, 8) if axial_first else (9, 8, 23)
    src = _volume(shape, axial_first)
    axis = cases.axial_axis(src.affine)
    assert axis == (0 if axial_first else 2)
    start, stop = 6, 16
    slab = cases.cut_slab(src, start, stop)
    assert slab.spatial_shape[axis] == stop - start
    assert slab.spacing == pytest.approx(src.spacing)
    np.testing.assert_allclose(slab.direction, src.direction)
    ijk = np.argwhere(np.ones(slab.spatial_shape, bool))
    src_ijk = ijk.copy()
    src_ijk[:, axis] += start
    np.testing.assert_allclose(slab.voxel_to_ras(ijk), src.voxel_to_ras(src_ijk), atol=1e-9)
    np.testing.assert_array_equal(slab.array[tuple(ijk.T)], src.array[tuple(src_ijk.T)])
    # and back: every slab voxel's RAS position lands on the source voxel of the same value
    back = np.rint(src.ras_to_voxel(slab.voxel_to_ras(ijk))).astype(int)
    np.testing.assert_array_equal(src.array[tuple(back.T)], slab.array[tuple(ijk.T)])


def test_slab_bounds_and_starts():
    src = _volume()
    with pytest.raises(ValueError, match="outside"):
        cases.cut_slab(src, 20, 24)
    assert cases.slab_starts(23, 10, 5) == [0, 5, 10]
    assert cases.slab_starts(23, 10, 1)[-1] == 13
    assert cases.slab_starts(8, 10, 5) == []


@pytest.mark.parametrize("thickness", [5.0, 7.0, 4.5])
def test_thick_grid_spans_source_with_new_spacing(thickness):
    src = _volume()
    axis = 2
    n, dz = src.spatial_shape[axis], src.spacing[axis]
    thick, positions = cases.thick_slices(src, thickness)
    m = thick.spatial_shape[axis]
    assert m == round(n * dz / thickness)
    assert thick.spatial_shape[:2] == src.spatial_shape[:2]
    assert thick.spacing[axis] == pytest.approx(thickness)
    assert thick.spacing[:2] == pytest.approx(src.spacing[:2])
    np.testing.assert_allclose(thick.direction, src.direction, atol=1e-12)
    # same centre, extent within half a new slice of the source's
    centre = lambda v: v.voxel_to_ras((np.asarray(v.spatial_shape) - 1) / 2.0)  # noqa: E731
    np.testing.assert_allclose(centre(thick), centre(src), atol=1e-9)
    assert abs(m * thickness - n * dz) <= thickness / 2 + 1e-9
    # slice k of the thick grid sits at source index positions[k]
    ijk = np.array([[0, 0, k] for k in range(m)], float)
    src_ijk = ijk.copy()
    src_ijk[:, 2] = positions
    np.testing.assert_allclose(thick.voxel_to_ras(ijk), src.voxel_to_ras(src_ijk), atol=1e-9)
    assert np.all(np.diff(positions) == pytest.approx(thickness / dz))


def test_thick_constant_stays_constant_and_blur_is_fwhm():
    src = _volume()
    const = src.with_array(np.full(src.spatial_shape, 137, np.int16))
    thick, _ = cases.thick_slices(const, 5.0)
    np.testing.assert_allclose(thick.array, 137.0, rtol=1e-6)

    # The slice profile has FWHM = thickness: on a 0.5 mm grid of 51 slices, 5 mm slices
    # sit on source slices 5, 15, 25, 35, 45; an impulse 2.5 mm (5 voxels) off slice 25
    # gives half of what one on it gives.
    def centre_slice(offset):
        arr = np.zeros((1, 1, 51), np.float32)
        arr[0, 0, 25 + offset] = 1.0
        thick, positions = cases.thick_slices(Volume(arr, np.diag([1.0, 1.0, 0.5, 1.0])), 5.0)
        np.testing.assert_allclose(positions, [5, 15, 25, 35, 45])
        return float(thick.array[0, 0, 2])

    assert centre_slice(5) / centre_slice(0) == pytest.approx(0.5, rel=1e-5)
    assert centre_slice(-5) / centre_slice(0) == pytest.approx(0.5, rel=1e-5)


def test_thick_labels_nearest_on_the_same_grid():
    src = _volume()
    labels = src.with_array(
        (np.arange(23)[None, None, :] % 4 * np.ones((9, 8, 1))).astype(np.uint8)
    )
    thick, positions = cases.thick_slices(src, 7.0)
    lab = cases.thick_label_slices(labels, positions, 7.0)
    np.testing.assert_allclose(lab.affine, thick.affine)
    assert lab.array.dtype == np.uint8
    for k, pos in enumerate(positions):
        assert np.all(lab.array[:, :, k] == labels.array[:, :, int(np.floor(pos + 0.5))])


def test_remap_by_name():
    src = np.array([[[0, 1, 5, 9, 104]]], np.uint8)
    names = {1: "spleen", 5: "liver", 9: "portal_vein_and_splenic_vein", 104: "urinary_bladder"}
    target = [(1, "spleen"), (5, "liver"), (10, "urinary_bladder"), (4, "gallbladder")]
    out = cases.remap_by_name(src, names, target)
    np.testing.assert_array_equal(out, [[[0, 1, 5, 0, 10]]])


def test_real_ct_slab_keeps_labels_aligned(shared_data):
    import medrecon

    folder = shared_data / "ct-abdomen"
    ct = medrecon.load(folder / "ct.nii.gz")
    lab = medrecon.load(folder / "labels.nii.gz")
    names = cases.read_label_names(folder / "labels.json")
    assert json.loads((folder / "labels.json").read_text())["5"] == names[5] == "liver"
    slab, slab_lab = cases.cut_slab(ct, 70, 80), cases.cut_slab(lab, 70, 80)
    np.testing.assert_allclose(slab.affine, slab_lab.affine)
    ras = slab.voxel_to_ras([[10, 20, 3]])
    np.testing.assert_allclose(ct.ras_to_voxel(ras), [[10, 20, 73]], atol=1e-6)
    assert slab.array[10, 20, 3] == ct.array[10, 20, 73]
    thick, _ = cases.thick_slices(ct, 7.0)
    assert thick.spatial_shape == (122, 101, 48)
