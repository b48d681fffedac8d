"""The head landmark (pipeline/skull.py), the refine step that uses it, and the domain
check's image warning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medrecon.pipeline.config import RefineStep
from medrecon.pipeline.refine import refine_labels
from medrecon.pipeline.skull import head_extent, skull_base_height

SPACING = 2.0  # mm, isotropic: the search samples every voxel
LOW_S = -100.0  # RAS S of slice 0
HEAD = (30, 60)  # slices whose skull closes around brain


def _ring(image, k, inner, tissue_hu, bone_hu=1000.0):
    """In slice ``k``: a bone ring (2 voxels thick) round a square of ``tissue_hu``
    holding ``inner`` voxels a side, centred in a 60x60 plane."""
    a, b = 30 - inner // 2 - 2, 30 + inner // 2 + 2
    image[a:b, a:b, k] = bone_hu
    image[a + 2 : b - 2, a + 2 : b - 2, k] = tissue_hu


def _head(brain_hu: float = 30.0):
    """A CT in air along 70 slices: a neck (soft tissue, a small vertebra ring) below a
    head whose skull encloses 80 % of the cross-section in slices ``HEAD``."""
    image = np.full((60, 60, 70), -1000.0, dtype=np.float32)
    image[10:50, 10:50, : HEAD[0]] = 40.0  # the neck: 40x40 voxels of muscle
    for k in range(HEAD[0]):
        image[27:33, 38:44, k] = 500.0  # a vertebra: a small ring round the cord
        image[29:31, 40:42, k] = 20.0
    for k in range(*HEAD):
        image[10:50, 10:50, k] = 40.0  # scalp
        _ring(image, k, 32, brain_hu)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = (-60.0, -60.0, LOW_S)
    return image, affine


def _lowest_head_s() -> float:
    return LOW_S + SPACING * HEAD[0]


def test_the_head_is_found_from_its_lowest_to_its_highest_skull_slice():
    image, affine = _head()
    found = head_extent(image, affine, min_head_mm=20.0)
    assert found is not None
    assert found.lowest_mm == pytest.approx(_lowest_head_s())
    assert found.highest_mm == pytest.approx(LOW_S + SPACING * (HEAD[1] - 1))
    assert found.head_mm == pytest.approx(SPACING * (HEAD[1] - HEAD[0]))
    assert found.body_mm == pytest.approx(SPACING * HEAD[1])  # the empty top holds no body
    assert skull_base_height(image, affine, 20.0) == pytest.approx(_lowest_head_s())


@pytest.mark.parametrize("axes", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
@pytest.mark.parametrize("flip", [False, True])
def test_the_head_is_in_scanner_space_whatever_the_array_order(axes, flip):
    image, affine = _head()
    if flip:  # the body running down the array; the affine says so
        flipped = affine.copy()
        flipped[:3, 3] = affine[:3, :3] @ (0, 0, image.shape[2] - 1) + affine[:3, 3]
        flipped[:3, 2] *= -1
        image, affine = image[:, :, ::-1], flipped
    moved = np.transpose(image, axes)
    moved_affine = np.eye(4)
    moved_affine[:3, :3] = affine[:3, :3][:, list(axes)]
    moved_affine[:3, 3] = affine[:3, 3]
    assert skull_base_height(moved, moved_affine, 20.0) == pytest.approx(_lowest_head_s())


def test_no_head_for_air_fat_a_small_ring_or_a_short_run():
    image, affine = _head()
    assert skull_base_height(image[:, :, : HEAD[0]], affine, 20.0) is None  # the neck alone
    # A ring round air (a phantom's shell) or round fat-holding tissue (a rib cage
    # closed by calcified cartilage round the upper abdomen) is no skull.
    air, _ = _head(brain_hu=-1000.0)
    assert head_extent(air, affine, 20.0) is None
    belly, _ = _head()
    for k in range(*HEAD):
        belly[14:46:4, 14:46, k] = -100.0  # every 4th row fat: 25 % of what the ring holds
    assert head_extent(belly, affine, 20.0) is None
    # A ring round a small share of the body (a vertebra, the pelvis's inlet).
    trunk = np.full(image.shape, -1000.0, dtype=np.float32)
    trunk[5:55, 5:55, :] = 40.0
    for k in range(trunk.shape[2]):
        _ring(trunk, k, 20, 30.0)  # 20x20 of 50x50: 16 %
    assert head_extent(trunk, affine, 20.0) is None
    # The ring's bone is not what it holds: 22x22 of brain in a 40x40 head is 30 %,
    # under the 40 % needed, though brain and bone together make 42 %.
    small = image.copy()
    for k in range(*HEAD):
        small[10:50, 10:50, k] = 40.0
        _ring(small, k, 22, 30.0)
    assert head_extent(small, affine, 20.0) is None
    # 60 mm of head slices, but min_head_mm asks for more.
    assert head_extent(image, affine, 70.0) is None


def _labels_in_head():
    """Label 1 centred in the head and one centred in the neck; label 2 in the head."""
    labels = np.zeros((60, 60, 70), dtype=np.uint8)
    labels[20:30, 20:30, 40:48] = 1
    labels[15:25, 15:25, 5:12] = 1
    labels[32:40, 32:40, 33:37] = 2
    return labels


def test_keep_below_skull_removes_organs_centred_in_the_head_on_ct_only():
    image, affine = _head()
    labels = _labels_in_head()
    step = RefineStep("keep_below_skull", (1, 2), {"min_head_mm": 20.0})
    out = refine_labels(labels, (SPACING,) * 3, [step], affine, image=image, modality="CT")
    want = labels.copy()
    want[:, :, HEAD[0] :] = 0
    assert np.array_equal(out, want)
    # Only the labels named: label 2 stays when the step names label 1 alone.
    only = RefineStep("keep_below_skull", (1,), {"min_head_mm": 20.0})
    out = refine_labels(labels, (SPACING,) * 3, [only], affine, image=image, modality="CT")
    assert (out == 2).sum() == (labels == 2).sum()
    # HU mean nothing on an MR; a trunk gives no landmark.
    same = refine_labels(labels, (SPACING,) * 3, [step], affine, image=image, modality="MR")
    assert np.array_equal(same, labels)
    neck = image.copy()
    neck[:, :, HEAD[0] :] = neck[:, :, :1]
    same = refine_labels(labels, (SPACING,) * 3, [step], affine, image=neck, modality="CT")
    assert np.array_equal(same, labels)
    with pytest.raises(ValueError, match="needs the image"):
        refine_labels(labels, (SPACING,) * 3, [step], affine, modality="CT")
    with pytest.raises(ValueError, match="needs parameter"):
        refine_labels(labels, (SPACING,) * 3, [RefineStep("keep_below_skull", (1,), {})], affine)


def _untagged(volume):
    """``volume`` as a NIfTI would give it: no modality, no body part."""
    from medrecon.volume import Volume

    extra = {k: v for k, v in volume.meta.extra.items() if k != "body_part"}
    meta = dataclasses.replace(volume.meta, extra=extra, modality="")
    return Volume(volume.array, volume.affine, meta)


def test_real_scans_head_ct_has_a_head_and_the_trunk_cts_none(shared_data):
    """The GE head CT of the DICOM validation set (tilted, uneven slices, resampled by
    the loader) holds a head; the abdominal CT, slicerio's chest CT and the Philips head
    phantom (a skull ring round air) none."""
    from pathlib import Path

    import medrecon
    from medrecon.io import load_all

    head = load_all(shared_data / "dicom" / "ct-ge-tilt-uneven")[0]
    found = head_extent(np.asarray(head.array), head.affine, 20.0)
    assert found is not None
    # Measured from the scan: skull slices from S 13.7 to 90.7 mm, 84 of 147 mm of body.
    assert found.lowest_mm == pytest.approx(13.7, abs=0.1)
    assert found.head_mm > 0.5 * found.body_mm
    abdomen = medrecon.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    assert head_extent(np.asarray(abdomen.array), abdomen.affine, 20.0) is None
    phantom = load_all(shared_data / "dicom" / "ct-philips-tilt")[0]
    assert head_extent(np.asarray(phantom.array), phantom.affine, 20.0) is None
    slicerio = pytest.importorskip("slicerio")
    chest = Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd"
    if chest.is_file():
        volume = medrecon.load(chest)
        assert head_extent(np.asarray(volume.array), volume.affine, 20.0) is None


def test_domain_check_warns_for_an_untagged_head_ct_only(shared_data):
    """A head CT without a body part (as a NIfTI gives it) is segmented with a warning;
    tagged HEAD it is refused, as before; the abdominal CT passes without one."""
    import medrecon
    from medrecon.errors import OutOfDomainError
    from medrecon.io import load_all
    from medrecon.pipeline.domain import check_domain
    from medrecon.pipeline.registry import load_pipeline

    pipeline = load_pipeline("abdomen-ct")
    head = load_all(shared_data / "dicom" / "ct-ge-tilt-uneven")[0]
    with pytest.raises(OutOfDomainError, match="body part is HEAD"):
        check_domain(head, pipeline, where="ge-head")
    check = check_domain(_untagged(head), pipeline, where="ge-head.nii.gz")
    assert check.modality == "CT"
    assert len(check.warnings) == 1
    assert "ge-head.nii.gz: the image looks like a head" in check.warnings[0]
    assert "skull ring around brain-density tissue" in check.warnings[0]
    abdomen = medrecon.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    assert check_domain(abdomen, pipeline, where="abdomen").warnings == ()


def test_shipped_pipeline_labels_nothing_in_an_untagged_head_ct(shared_data):
    """Before keep_below_skull the shipped model called 405 mL of this brain "bladder"
    and 49 mL "kidney"; with it, no organ is left."""
    from medrecon.io import load_all
    from medrecon.models.segment import segment

    head = _untagged(load_all(shared_data / "dicom" / "ct-ge-tilt-uneven")[0])
    result = segment(head, "abdomen-ct", device="cpu")
    assert not np.asarray(result.labels.array).any()
