"""The lung landmark (pipeline/lungs.py) and the refine step that uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medrecon.pipeline.config import RefineStep
from medrecon.pipeline.lungs import lung_base_height
from medrecon.pipeline.refine import refine_labels

SPACING = 4.0  # mm, isotropic
LOW_S = -300.0  # RAS S of slice 0


def _chest(lung_hu: float = -850.0, lung_slices: tuple[int, int] = (20, 50)):
    """A CT of a body (40 HU, a 30-voxel square across) in air along 60 slices, with two
    lungs (``lung_hu``) in slices ``lung_slices``: their cross-section grows linearly
    from the first slice over 10 slices, then stays full. Half the full cross-section is
    first reached a few slices above the first (measured below from the array)."""
    image = np.full((40, 40, 60), -1000.0, dtype=np.float32)
    image[5:35, 5:35, :] = 40.0
    lo, hi = lung_slices
    for k in range(lo, hi):
        width = min(12, 1 + round(11 * (k - lo) / 9))  # 1 .. 12 voxels
        image[8 : 8 + width, 10:30, k] = lung_hu  # right lung
        image[32 - width : 32, 10:30, k] = lung_hu  # left lung
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = (-80.0, -80.0, LOW_S)
    return image, affine


def _expected_base(image: np.ndarray, affine: np.ndarray, lung_hu: float) -> float:
    """The lowest slice whose lung area is half the largest, as RAS S (4 mm voxels: the
    code samples every voxel)."""
    area = (image == lung_hu).sum(axis=(0, 1))
    k = int(np.flatnonzero(area >= 0.5 * area.max()).min())
    return LOW_S + SPACING * k


def _upside_down(image: np.ndarray, affine: np.ndarray):
    """The same voxels with the body running down the array; the affine says so."""
    flipped = affine.copy()
    flipped[:3, 3] = affine[:3, :3] @ (0, 0, image.shape[2] - 1) + affine[:3, 3]
    flipped[:3, 2] *= -1
    return image[:, :, ::-1], flipped


def test_lung_base_is_where_the_lungs_reach_half_their_cross_section():
    image, affine = _chest()
    base = lung_base_height(image, affine, min_lung_mm3=1e5)
    want = _expected_base(image, affine, -850.0)
    assert base == pytest.approx(want)
    # The base lies inside the growing part, above the lungs' lowest slice.
    assert LOW_S + SPACING * 20 < base < LOW_S + SPACING * 30


@pytest.mark.parametrize("axes", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
@pytest.mark.parametrize("flip", [False, True])
def test_lung_base_is_in_scanner_space_whatever_the_array_order(axes, flip):
    image, affine = _chest()
    want = lung_base_height(image, affine, 1e5)
    if flip:
        image, affine = _upside_down(image, affine)
    moved = np.transpose(image, axes)
    moved_affine = np.eye(4)
    moved_affine[:3, :3] = affine[:3, :3][:, list(axes)]
    moved_affine[:3, 3] = affine[:3, 3]
    assert lung_base_height(moved, moved_affine, 1e5) == pytest.approx(want)


def test_no_landmark_for_gas_small_lungs_or_no_air():
    gas, affine = _chest(lung_hu=-1000.0)  # an insufflated colon reads like this
    assert lung_base_height(gas, affine, 1e5) is None
    image, affine = _chest()
    volume_mm3 = (image == -850.0).sum() * SPACING**3
    assert lung_base_height(image, affine, min_lung_mm3=2 * volume_mm3) is None
    body = np.full(image.shape, 40.0, dtype=np.float32)
    assert lung_base_height(body, affine, 1e5) is None


@pytest.mark.parametrize("flip", [False, True])
def test_no_landmark_when_the_lungs_are_widest_at_the_scans_top(flip):
    """An abdominal scan that ends in the lower lungs: however much lung is in view,
    their widest part may lie above it, so "half the widest" says nothing."""
    image, affine = _chest(lung_slices=(20, 60))  # full width up to the top slice
    assert (image == -850.0).sum() * SPACING**3 > 1e6
    if flip:
        image, affine = _upside_down(image, affine)
    assert lung_base_height(image, affine, 1e5) is None
    # The chest of the other tests cut two slices above the lungs' top: the landmark
    # stays.
    image, affine = _chest()
    assert lung_base_height(image[:, :, :52], affine, 1e5) == pytest.approx(
        _expected_base(image, affine, -850.0)
    )


def _labels_in_chest():
    """Label 1 as a blob centred in the full lungs' slices (above the base) and one
    centred below the lungs."""
    labels = np.zeros((40, 40, 60), dtype=np.uint8)
    labels[15:25, 12:20, 38:44] = 1  # between the lungs, S -300 + 4*41
    labels[15:25, 12:20, 5:11] = 1  # below them
    return labels


def test_keep_below_lungs_removes_organs_centred_in_the_chest_on_ct_only():
    image, affine = _chest()
    labels = _labels_in_chest()
    step = RefineStep("keep_below_lungs", (1,), {"min_lung_mm3": 1e5})
    out = refine_labels(labels, (SPACING,) * 3, [step], affine, image=image, modality="CT")
    want = labels.copy()
    want[:, :, 38:44] = 0
    assert np.array_equal(out, want)
    # HU mean nothing on an MR, and a scan without lungs gives no landmark.
    same = refine_labels(labels, (SPACING,) * 3, [step], affine, image=image, modality="MR")
    assert np.array_equal(same, labels)
    body = np.full(image.shape, 40.0, dtype=np.float32)
    same = refine_labels(labels, (SPACING,) * 3, [step], affine, image=body, modality="CT")
    assert np.array_equal(same, labels)
    with pytest.raises(ValueError, match="needs the image"):
        refine_labels(labels, (SPACING,) * 3, [step], affine, modality="CT")
    with pytest.raises(ValueError, match="needs parameter"):
        refine_labels(labels, (SPACING,) * 3, [RefineStep("keep_below_lungs", (1,), {})], affine)


def test_real_scans_chest_ct_has_lung_bases_and_the_abdominal_ct_none(shared_data):
    """slicerio's chest CT of another patient (3x3x10 mm) holds the lungs down to their
    bases; the abdominal CT only the bottom of them (no landmark, so the step leaves
    every abdominal scan alone)."""
    nib = pytest.importorskip("nibabel")
    slicerio = pytest.importorskip("slicerio")
    import medrecon

    chest = Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd"
    if not chest.is_file():
        pytest.skip("slicerio ships no CTChest4.nrrd")
    volume = medrecon.load(chest)
    image = np.asarray(volume.array)
    base = lung_base_height(image, volume.affine, 1e6)
    # The scan's slices run from S -340 to -10 mm, 10 mm apart; the lungs' cross-section
    # first reaches half its largest on the slice at S -240 (measured from the scan).
    assert base == pytest.approx(-240.25, abs=0.01)
    ct = nib.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    assert lung_base_height(np.asarray(ct.dataobj), ct.affine, 1e6) is None
