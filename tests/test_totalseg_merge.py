"""Merging part label maps into TotalSegmentator's numbering; its geometry steps."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medrecon.errors import PipelineError
from medrecon.foreign.totalseg.grid import from_model_grid, to_model_grid
from medrecon.foreign.totalseg.merge import MergeReport, merge_parts, part_lookup
from medrecon.foreign.totalseg.tasks import task_spec
from medrecon.volume import Volume


def test_total_parts_merge_into_global_numbers() -> None:
    spec = task_spec("total")
    lookups = [part_lookup(p.classes, spec.classes) for p in spec.parts]
    shape = (6, 1, 1)
    organs = np.array([1, 5, 0, 0, 0, 24]).reshape(shape)  # spleen, liver, ..., kidney_cyst_right
    vertebrae = np.array([0, 0, 1, 26, 0, 0]).reshape(shape)  # sacrum, vertebrae_C1
    cardiac = np.zeros(shape, np.uint8)
    muscles = np.array([0, 0, 0, 0, 11, 0]).reshape(shape)  # its 11: spinal_cord
    ribs = np.zeros(shape, np.uint8)
    merged = merge_parts([organs, vertebrae, cardiac, muscles, ribs], lookups)
    names = [spec.classes.get(int(v), "background") for v in merged.ravel()]
    assert names[:4] == ["spleen", "liver", "sacrum", "vertebrae_C1"]
    assert names[4] == spec.parts[3].classes[11] == "spinal_cord"
    assert names[5] == "kidney_cyst_right"
    assert merged.ravel().tolist() == [1, 5, 25, 50, 79, 24]
    assert merged.dtype == np.uint8


def test_later_part_wins_a_contested_voxel_and_unnamed_values_are_background() -> None:
    spec = task_spec("total")
    lookups = [part_lookup(p.classes, spec.classes) for p in spec.parts[:2]]
    organs = np.array([[[5, 5, 0, 99]]])  # liver, liver, -, a value part 1 does not name
    vertebrae = np.array([[[0, 1, 1, 0]]])  # sacrum claims voxel 1 too
    report = MergeReport()
    merged = merge_parts([organs, vertebrae], lookups, report=report)
    assert merged.tolist() == [[[5, 25, 25, 0]]]
    assert report.overwritten == {0: 0, 1: 1}
    assert report.unnamed == {0: [99]}


def test_lookup_refuses_a_class_the_task_lacks() -> None:
    with pytest.raises(PipelineError, match="not in the task's class map"):
        part_lookup({1: "liver", 2: "tail"}, {1: "liver"})


def _oblique_free_volume(shape, spacing, flips) -> Volume:
    """An LPS-ish grid (axes flipped and permuted) with a ramp, like a DICOM CT."""
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1
    # i -> -x (L), j -> -z ... a permutation with flips
    affine[0, 1] = -spacing[1]
    affine[1, 0] = spacing[0] * flips
    affine[2, 2] = -spacing[2]
    affine[:3, 3] = (12.0, -40.0, 80.0)
    return Volume(array, affine)


def test_model_grid_matches_totalsegmentator_steps() -> None:
    """RAS by nibabel's as_closest_canonical, then scipy zoom at old/new spacing, int32."""
    volume = _oblique_free_volume((20, 16, 9), (0.8, 0.7, 3.0), flips=-1)
    model_input, grid = to_model_grid(volume, (1.5, 1.5, 1.5))
    canonical = nib.as_closest_canonical(
        nib.Nifti1Image(volume.array.astype(np.float64), volume.affine)
    )
    assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
    zooms = np.array(canonical.header.get_zooms())
    zoom = zooms / 1.5
    expected = ndimage.zoom(canonical.get_fdata(), zoom, order=1, mode="nearest").astype(np.int32)
    assert model_input.spatial_shape == expected.shape
    assert np.array_equal(model_input.array, expected)
    assert np.allclose(model_input.spacing, 1.5)
    assert np.allclose(model_input.affine[:3, 3], canonical.affine[:3, 3])
    assert grid.canonical_shape == canonical.shape


def test_labels_come_back_on_the_native_grid() -> None:
    volume = _oblique_free_volume((20, 16, 9), (0.8, 0.7, 3.0), flips=1)
    model_input, grid = to_model_grid(volume, (1.5, 1.5, 1.5))
    # a label map on the model grid marking voxels by their RAS x sign
    ras = np.indices(model_input.spatial_shape).reshape(3, -1).T @ model_input.affine[:3, :3].T
    ras += model_input.affine[:3, 3]
    model_labels = np.where(ras[:, 0] > ras[:, 0].mean(), 2, 1).reshape(model_input.spatial_shape)
    native = from_model_grid(model_labels.astype(np.uint8), grid)
    assert native.shape == volume.spatial_shape and native.dtype == np.uint8
    native_ras = volume.voxel_to_ras(np.indices(volume.spatial_shape).reshape(3, -1).T)
    far = np.abs(native_ras[:, 0] - ras[:, 0].mean()) > 3  # away from the boundary
    want = np.where(native_ras[:, 0] > ras[:, 0].mean(), 2, 1)
    assert np.array_equal(native.reshape(-1)[far], want[far])


def test_already_at_spacing_and_ras_is_untouched() -> None:
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    volume = Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5), affine)
    model_input, grid = to_model_grid(volume, (1.5, 1.5, 1.5))
    assert not grid.resampled and np.array_equal(model_input.array, volume.array)
    labels = (np.arange(60).reshape(3, 4, 5) % 3).astype(np.uint8)
    assert np.array_equal(from_model_grid(labels, grid), labels)
