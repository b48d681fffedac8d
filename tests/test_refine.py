"""Label-map refinement on synthetic shapes whose right answer is known voxel for voxel."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.pipeline.config import RefineStep
from medrecon.pipeline.refine import (
    fill_holes,
    keep_largest_component,
    refine_labels,
    remove_small_islands,
    smooth,
)

KEEP = RefineStep("keep_largest_component")
KEEP_CUT = RefineStep("keep_largest_component", None, {"keep_cut_pieces": 1.0})
FILL = RefineStep("fill_holes")
BOX_RADIUS = (1.8, 1.8, 1.8)  # an ellipsoid of these radii is exactly the 3x3x3 box


def ball(shape: tuple[int, int, int], center: tuple[int, int, int], radius: float) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - center[0]) ** 2 + (y - center[1]) ** 2 + (x - center[2]) ** 2 <= radius**2


def islands(shape: tuple[int, int, int] = (20, 20, 20)) -> np.ndarray:
    """Cubes of 1, 8, 27 and 64 voxels, well apart."""
    mask = np.zeros(shape, dtype=bool)
    mask[1, 1, 1] = True
    mask[5:7, 5:7, 5:7] = True
    mask[10:13, 10:13, 10:13] = True
    mask[15:19, 1:5, 1:5] = True
    return mask


# --- mask functions ---------------------------------------------------------------------


def test_keep_largest_component_picks_the_biggest_sphere():
    shape = (40, 40, 40)
    small = ball(shape, (6, 6, 6), 3)
    big = ball(shape, (20, 20, 20), 8)
    medium = ball(shape, (32, 32, 32), 5)
    result = keep_largest_component(small | big | medium)
    np.testing.assert_array_equal(result, big)
    assert result.dtype == bool


def test_keep_largest_component_uses_26_connectivity_and_raster_order_for_ties():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[0:2, 0:2, 0:2] = True
    mask[2:4, 2:4, 2:4] = True  # meets the first cube at a corner only: together 16 voxels
    mask[6:8, 6:8, 6:9] = True  # 12 voxels: the largest only if corners did not connect
    expected = mask.copy()
    expected[6:8, 6:8, 6:9] = False
    np.testing.assert_array_equal(keep_largest_component(mask), expected)
    tie = np.zeros((10, 10, 10), dtype=bool)
    tie[5:7, 0:2, 0:2] = True
    tie[0:2, 5:7, 5:7] = True  # same size, first in raster order: this one wins
    expected = np.zeros_like(tie)
    expected[0:2, 5:7, 5:7] = True
    np.testing.assert_array_equal(keep_largest_component(tie), expected)
    assert not keep_largest_component(np.zeros((3, 3, 3), dtype=bool)).any()


def _cut_organ() -> tuple[np.ndarray, np.ndarray]:
    """A 'liver' cut by the scan's first slice into a big lobe and a small one, a crumb
    inside the volume and a piece on the opposite end; and what keep_cut_pieces keeps."""
    mask = np.zeros((20, 30, 30), dtype=bool)
    mask[0:8, 2:14, 2:14] = True  # the largest, on the low face of axis 0
    mask[0:3, 20:26, 20:26] = True  # a second lobe on the same face: kept
    mask[10:12, 20:22, 2:4] = True  # an interior crumb: removed
    mask[17:20, 2:4, 20:22] = True  # on the high face, which the largest does not touch
    expected = mask.copy()
    expected[10:20] = False
    return mask, expected


def test_keep_largest_component_keeps_the_pieces_cut_by_the_same_face():
    mask, expected = _cut_organ()
    np.testing.assert_array_equal(keep_largest_component(mask, keep_cut_pieces=True), expected)
    only_largest = np.zeros_like(mask)
    only_largest[0:8, 2:14, 2:14] = True
    np.testing.assert_array_equal(keep_largest_component(mask), only_largest)
    # A largest component inside the volume touches no face: only it stays.
    inner = np.pad(mask, 1)
    kept = keep_largest_component(inner, keep_cut_pieces=True)
    np.testing.assert_array_equal(kept, np.pad(only_largest, 1))


def test_refine_labels_keep_cut_pieces_judges_the_volume_faces_not_the_label_box():
    mask, expected = _cut_organ()
    labels = np.zeros((30, 40, 40), dtype=np.uint8)
    labels[:20, 5:35, 5:35][mask] = 3
    labels[25:28, 0:2, 0:2] = 1  # another label, its own box
    out = refine_labels(labels, (1.0, 1.0, 1.0), [KEEP_CUT])
    want = labels.copy()
    want[:20, 5:35, 5:35][mask & ~expected] = 0
    np.testing.assert_array_equal(out, want)
    # Label 3's box ends at slice 20, the volume at 30: the piece at slices 17-20 lies on
    # its box's face, not the volume's, and goes like the crumb.
    assert not out[17:20].any()


@pytest.mark.parametrize(
    ("min_voxels", "kept"),
    [(1, 100), (2, 99), (8, 99), (9, 91), (27, 91), (28, 64), (64, 64), (65, 0)],
)
def test_remove_small_islands_threshold_is_inclusive(min_voxels, kept):
    result = remove_small_islands(islands(), min_voxels)
    np.testing.assert_equal(int(result.sum()), kept)
    assert not (result & ~islands()).any()


def test_remove_small_islands_counts_a_diagonal_chain_as_one_island():
    mask = np.zeros((8, 8, 8), dtype=bool)
    for i in range(5):
        mask[i, i, i] = True  # corner to corner
    np.testing.assert_array_equal(remove_small_islands(mask, 5), mask)
    assert not remove_small_islands(mask, 6).any()


def test_fill_holes_fills_a_hollow_sphere_exactly():
    shape = (24, 24, 24)
    solid = ball(shape, (12, 12, 12), 9)
    hollow = solid & ~ball(shape, (12, 12, 12), 5)
    np.testing.assert_equal(int(fill_holes(hollow).sum()), int(solid.sum()))
    np.testing.assert_array_equal(fill_holes(hollow), solid)


def test_fill_holes_leaves_cavities_open_to_the_border():
    cup = np.zeros((10, 10, 10), dtype=bool)
    cup[0:8, 1:9, 1:9] = True
    cup[0:7, 2:8, 2:8] = False  # the cup's inside reaches the array face at index 0
    np.testing.assert_array_equal(fill_holes(cup), cup)
    tube = np.zeros((10, 10, 10), dtype=bool)
    tube[:, 2:8, 2:8] = True
    tube[:, 4:6, 4:6] = False  # a channel right through the array
    np.testing.assert_array_equal(fill_holes(tube), tube)


def test_fill_holes_background_is_6_connected():
    cube = np.zeros((7, 7, 7), dtype=bool)
    cube[1:6, 1:6, 1:6] = True
    # A channel from the centre to the face that turns by edges only: voxels meeting at
    # an edge are not connected background, so only the face voxel leaks out.
    for voxel in [(3, 3, 3), (4, 4, 3), (5, 5, 3)]:
        cube[voxel] = False
    expected = cube.copy()
    expected[3, 3, 3] = expected[4, 4, 3] = True
    np.testing.assert_array_equal(fill_holes(cube), expected)


def test_smooth_removes_a_spur_and_fills_a_notch():
    cube = np.zeros((20, 20, 20), dtype=bool)
    cube[4:14, 4:14, 4:14] = True
    rough = cube.copy()
    rough[14:18, 8, 8] = True  # a one-voxel-thin spur, 4 long
    rough[4, 9, 9] = False  # a one-voxel pit in another face
    rough[6:12, 13, 9] = False  # a one-voxel-wide groove in a third face
    np.testing.assert_array_equal(smooth(rough, BOX_RADIUS), cube)


def test_smooth_keeps_a_big_ball_and_adds_nothing_to_it():
    solid = ball((40, 40, 40), (20, 20, 20), 15)
    result = smooth(solid, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(result.sum(), solid.sum(), rtol=0.02)
    assert not (result & ~solid).any()


def test_smooth_at_the_array_border_and_without_extent_on_an_axis():
    block = np.zeros((12, 12, 12), dtype=bool)
    block[0:10, 0:12, 2:9] = True  # touches four faces of the array
    np.testing.assert_array_equal(smooth(block, BOX_RADIUS), block)
    plate = np.zeros((9, 12, 12), dtype=bool)
    plate[4, 1:11, 1:11] = True  # one voxel thick along axis 0
    np.testing.assert_array_equal(smooth(plate, (0.4, 1.8, 1.8)), plate)
    assert not smooth(plate, BOX_RADIUS).any()
    np.testing.assert_array_equal(smooth(plate, (0.4, 0.4, 0.4)), plate)
    assert not smooth(plate, (0.6, 1.8, 1.8)).any()  # 0.6 rounds to a 1-voxel extent


def test_smooth_closes_a_gap_between_two_blocks():
    labels = np.zeros((20, 12, 12), dtype=np.uint8)
    labels[3:9, 3:9, 3:9] = 1
    labels[10:16, 3:9, 3:9] = 1  # one empty slice between the blocks
    expected = np.zeros_like(labels)
    expected[3:16, 3:9, 3:9] = 1
    np.testing.assert_array_equal(smooth(labels == 1, BOX_RADIUS), expected == 1)
    step = RefineStep("smooth", None, {"radius_mm": 1.8})
    np.testing.assert_array_equal(refine_labels(labels, (1, 1, 1), [step]), expected)


# --- refine_labels ----------------------------------------------------------------------


def test_refine_labels_converts_min_volume_with_anisotropic_spacing():
    labels = islands().astype(np.uint8)
    spacing = (0.5, 0.5, 2.0)  # 0.5 mm3 per voxel
    step = RefineStep("remove_small_islands", None, {"min_volume_mm3": 4.0})  # 8 voxels
    np.testing.assert_equal(int(refine_labels(labels, spacing, [step]).sum()), 99)
    step = RefineStep("remove_small_islands", None, {"min_volume_mm3": 4.2})  # 8.4 -> 9
    np.testing.assert_equal(int(refine_labels(labels, spacing, [step]).sum()), 91)
    # 8 voxels of 0.539 mm3, though 4.312 / 0.539 is 8.000000000000002 in floating point.
    step = RefineStep("remove_small_islands", None, {"min_volume_mm3": 4.312})
    np.testing.assert_equal(int(refine_labels(labels, (0.7, 0.7, 1.1), [step]).sum()), 99)


def test_refine_labels_converts_radius_per_axis():
    plate = np.zeros((9, 12, 12), dtype=np.uint8)
    plate[4, 1:11, 1:11] = 3
    step = RefineStep("smooth", None, {"radius_mm": 1.8})
    # 1.8 mm is 0.36 voxel along the 5 mm axis: no extent there, the plate fits.
    np.testing.assert_array_equal(refine_labels(plate, (5.0, 1.0, 1.0), [step]), plate)
    assert not refine_labels(plate, (1.0, 1.0, 1.0), [step]).any()
    rough = np.zeros((20, 20, 20), dtype=np.uint8)
    rough[4:14, 4:14, 4:14] = 1
    rough[14:18, 8, 8] = 1
    step = RefineStep("smooth", None, {"radius_mm": 2.0})
    expected = smooth(rough == 1, (2.0, 4.0, 1.0)).astype(np.uint8)
    np.testing.assert_array_equal(refine_labels(rough, (1.0, 0.5, 2.0), [step]), expected)


def test_refine_labels_never_overwrites_another_label():
    shape = (24, 24, 24)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[ball(shape, (12, 12, 12), 9)] = 1
    labels[ball(shape, (12, 12, 12), 5)] = 0
    labels[ball(shape, (12, 12, 12), 3)] = 2  # label 2 sits inside label 1's cavity
    expected = np.where(ball(shape, (12, 12, 12), 9), 1, 0).astype(np.uint8)
    expected[ball(shape, (12, 12, 12), 3)] = 2
    np.testing.assert_array_equal(refine_labels(labels, (1, 1, 1), [FILL]), expected)

    cube = np.zeros((20, 20, 20), dtype=np.uint8)
    cube[4:14, 4:14, 4:14] = 1
    cube[4, 9, 9] = 2  # a notch filled by another label
    cube[14:18, 8, 8] = 1  # a spur: removed, i.e. set to 0
    expected = np.zeros_like(cube)
    expected[4:14, 4:14, 4:14] = 1
    expected[4, 9, 9] = 2
    step = RefineStep("smooth", (1,), {"radius_mm": 1.8})
    np.testing.assert_array_equal(refine_labels(cube, (1, 1, 1), [step]), expected)


def test_refine_labels_restricted_to_a_subset_and_input_untouched():
    labels = np.zeros((20, 20, 40), dtype=np.uint16)
    labels[:, :, :20][islands()] = 7
    labels[:, :, 20:][islands()] = 300
    before = labels.copy()
    step = RefineStep("remove_small_islands", (300, 5), {"min_volume_mm3": 27.0})
    result = refine_labels(labels, (1.0, 1.0, 1.0), [step])
    np.testing.assert_array_equal(labels, before)
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result[:, :, :20], before[:, :, :20])
    np.testing.assert_equal(int((result == 300).sum()), 91)
    only_7 = refine_labels(labels, (1.0, 1.0, 1.0), [RefineStep(KEEP.kind, (7,))])
    np.testing.assert_equal([(only_7 == 7).sum(), (only_7 == 300).sum()], [64, 100])


def test_refine_labels_keeps_the_first_of_equal_islands_far_apart():
    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    labels[20:22, 0:2, 0:2] = 4
    labels[0:2, 25:27, 25:27] = 4  # first in raster order
    expected = np.zeros_like(labels)
    expected[0:2, 25:27, 25:27] = 4
    np.testing.assert_array_equal(refine_labels(labels, (1, 1, 1), [KEEP]), expected)


def test_refine_labels_empty_map_vanishing_label_and_no_steps():
    empty = np.zeros((5, 6, 7), dtype=np.uint8)
    result = refine_labels(empty, (1, 1, 1), [KEEP, FILL])
    assert result is not empty
    assert result.dtype == np.uint8
    assert not result.any()
    labels = islands().astype(np.uint8)
    drop_all = RefineStep("remove_small_islands", None, {"min_volume_mm3": 1000.0})
    smooth_step = RefineStep("smooth", None, {"radius_mm": 1.0})
    assert not refine_labels(labels, (1, 1, 1), [drop_all, FILL, smooth_step]).any()
    unchanged = refine_labels(labels, (1, 1, 1), [])
    np.testing.assert_array_equal(unchanged, labels)
    assert unchanged is not labels


def test_refine_labels_rejects_bad_steps_and_input():
    labels = islands().astype(np.uint8)
    with pytest.raises(ValueError, match="dilate"):
        refine_labels(labels, (1, 1, 1), [KEEP, RefineStep("dilate")])
    with pytest.raises(ValueError, match="radius_mm"):
        refine_labels(labels, (1, 1, 1), [RefineStep("smooth")])
    with pytest.raises(ValueError, match="spacing"):
        refine_labels(labels, (1, 0, 1), [KEEP])
    with pytest.raises(ValueError, match="3D integer"):
        refine_labels(labels.astype(float), (1, 1, 1), [KEEP])


def _per_label_on_whole_volume(labels: np.ndarray, steps: list[RefineStep]) -> np.ndarray:
    """The definition of refine_labels, without boxes: each mask function on the whole map."""
    out = labels.copy()
    for step in steps:
        for value in [v for v in np.unique(out) if v and (step.labels is None or v in step.labels)]:
            mask = out == value
            if step.kind == "keep_largest_component":
                new = keep_largest_component(mask, bool(step.params.get("keep_cut_pieces")))
            elif step.kind == "remove_small_islands":
                new = remove_small_islands(mask, int(step.params["min_volume_mm3"]))
            elif step.kind == "fill_holes":
                new = fill_holes(mask)
            else:
                new = smooth(mask, (step.params["radius_mm"],) * 3)
            out[mask & ~new] = 0
            out[new & ~mask & (out == 0)] = value
    return out


@pytest.mark.parametrize("seed", range(12))
def test_refine_labels_on_boxes_equals_whole_volume(seed):
    """Boxes, cut around stray islands, must not change any answer."""
    rng = np.random.default_rng(seed)
    shape = (24, 20, 22)
    labels = np.zeros(shape, dtype=np.uint8)
    for _ in range(10):  # overlapping blocks of random labels, some hollowed out
        lo = rng.integers(0, 18, 3)
        hi = lo + rng.integers(2, 10, 3)
        labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = rng.integers(1, 5)
        if rng.random() < 0.3:
            labels[lo[0] + 1 : hi[0] - 1, lo[1] + 1 : hi[1] - 1, lo[2] + 1 : hi[2] - 1] = 0
    strays = rng.random(shape) < 0.01
    labels[strays] = rng.integers(0, 5, int(strays.sum()))
    pool = [
        KEEP,
        FILL,
        RefineStep("remove_small_islands", None, {"min_volume_mm3": 4.0}),
        RefineStep("remove_small_islands", (1, 2), {"min_volume_mm3": 30.0}),
        RefineStep("smooth", None, {"radius_mm": 1.0}),
        RefineStep("smooth", (3, 4), {"radius_mm": 2.5}),
        RefineStep(KEEP.kind, (2, 4)),
        KEEP_CUT,
    ]
    steps = [pool[i] for i in rng.integers(0, len(pool), 4)]
    expected = _per_label_on_whole_volume(labels, steps)
    np.testing.assert_array_equal(refine_labels(labels, (1.0, 1.0, 1.0), steps), expected)


# --- keep_below: anatomy in scanner coordinates -----------------------------------------


def _two_organs(affine_z: float):
    """An 'organ' (label 1) in the upper half of a 30-slice volume along axis 2 and two
    blobs of label 2, one under it and one beside it, in scanner S ``affine_z`` per slice."""
    labels = np.zeros((20, 20, 30), dtype=np.uint8)
    labels[2:10, 2:10, 15:28] = 1  # reference, lowest slice 15
    labels[12:18, 12:18, 2:8] = 2  # below it: kept
    labels[12:18, 12:18, 18:24] = 2  # beside it: removed
    affine = np.diag([2.0, 2.0, affine_z, 1.0])
    affine[2, 3] = 100.0
    return labels, affine


def _upside_down(labels: np.ndarray, affine: np.ndarray):
    """The same anatomy stored the other way up along axis 2: slice 0 is the top."""
    flipped = affine.copy()
    flipped[:3, 2] = -affine[:3, 2]
    flipped[:3, 3] = affine[:3, 3] + (labels.shape[2] - 1) * affine[:3, 2]
    return labels[:, :, ::-1].copy(), flipped


@pytest.mark.parametrize("flip", [False, True])
def test_keep_below_removes_what_lies_above_the_reference_in_scanner_space(flip):
    labels, affine = _two_organs(3.0)
    if flip:
        labels, affine = _upside_down(labels, affine)
    step = RefineStep("keep_below", labels=(2,), reference=(1,))
    out = refine_labels(labels, (2.0, 2.0, 3.0), [step], affine)
    want = labels.copy()
    upper = slice(6, 12) if flip else slice(18, 24)
    want[12:18, 12:18, upper] = 0
    assert np.array_equal(out, want)
    assert (out == 2).sum() == 6 * 6 * 6 and (out == 1).sum() == (labels == 1).sum()


def test_keep_below_without_its_reference_changes_nothing_and_needs_the_affine():
    labels, affine = _two_organs(3.0)
    labels[labels == 1] = 0  # no reference present (a pelvis-only scan)
    step = RefineStep("keep_below", labels=(2,), reference=(1,))
    assert np.array_equal(refine_labels(labels, (2.0, 2.0, 3.0), [step], affine), labels)
    with pytest.raises(ValueError, match="affine"):
        refine_labels(labels, (2.0, 2.0, 3.0), [step])


def test_keep_below_measures_from_the_largest_reference_component():
    labels, affine = _two_organs(3.0)
    labels[0:2, 0:2, 0:2] = 1  # a stray reference island at the very bottom
    step = RefineStep("keep_below", labels=(2,), reference=(1,))
    out = refine_labels(labels, (2.0, 2.0, 3.0), [step], affine)
    assert (out[12:18, 12:18, 18:24] == 0).all()  # still measured from slice 15
    assert (out[12:18, 12:18, 2:8] == 2).all()


def test_keep_below_ignores_a_reference_smaller_than_its_minimum():
    labels, affine = _two_organs(3.0)
    labels[labels == 1] = 0
    labels[2:4, 2:4, 28:30] = 1  # a crumb of "reference" (8 voxels, 192 mm3) at the top
    labels[2:4, 2:4, 0:2] = 1  # and another at the very bottom: the largest is 8 voxels
    crumb = RefineStep("keep_below", (2,), {"min_reference_mm3": 8 * 12.0 + 1}, (1,))
    out = refine_labels(labels, (2.0, 2.0, 3.0), [crumb], affine)
    assert np.array_equal(out, labels)  # too small to be a landmark: nothing removed
    trusted = RefineStep("keep_below", (2,), {"min_reference_mm3": 8 * 12.0}, (1,))
    out = refine_labels(labels, (2.0, 2.0, 3.0), [trusted], affine)
    assert (out == 2).sum() == 0  # both blobs lie above the bottom crumb's lowest voxel


@pytest.mark.parametrize("flip", [False, True])
def test_keep_above_removes_what_lies_below_the_reference_in_scanner_space(flip):
    labels = np.zeros((20, 20, 30), dtype=np.uint8)
    labels[2:10, 2:10, 2:14] = 1  # reference (a bladder), highest slice 13
    labels[12:18, 12:18, 20:26] = 2  # above it: kept
    labels[12:18, 12:18, 6:12] = 2  # beside it: removed
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    if flip:
        labels, affine = _upside_down(labels, affine)
    step = RefineStep("keep_above", labels=(2,), reference=(1,))
    out = refine_labels(labels, (2.0, 2.0, 3.0), [step], affine)
    want = labels.copy()
    lower = slice(18, 24) if flip else slice(6, 12)
    want[12:18, 12:18, lower] = 0
    assert np.array_equal(out, want)
    assert (out == 2).sum() == 6 * 6 * 6


def _body_and_blobs(centre_x: int):
    """A CT-like body (0 HU) of 40 voxels across centred on column ``centre_x`` in air,
    a midline blob of label 1 and one 15 voxels (30 mm) to the side."""
    image = np.full((60, 20, 10), -1000.0, dtype=np.float32)
    image[centre_x - 20 : centre_x + 20] = 0.0
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[centre_x - 2 : centre_x + 2, 8:12, 3:7] = 1
    labels[centre_x + 13 : centre_x + 17, 8:12, 3:7] = 1
    return image, labels


@pytest.mark.parametrize("centre_x", [25, 35])
def test_keep_near_midline_measures_from_the_body_not_the_image(centre_x):
    image, labels = _body_and_blobs(centre_x)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[0, 3] = -60.0
    near = RefineStep("keep_near_midline", (1,), {"max_offset_mm": 25.0})
    out = refine_labels(labels, (2.0,) * 3, [near], affine, image=image, modality="CT")
    want = labels.copy()
    want[centre_x + 13 : centre_x + 17] = 0  # 30 mm off the body's midline: removed
    assert np.array_equal(out, want)
    wide = RefineStep("keep_near_midline", (1,), {"max_offset_mm": 35.0})
    out = refine_labels(labels, (2.0,) * 3, [wide], affine, image=image, modality="CT")
    assert np.array_equal(out, labels)


def test_keep_near_midline_needs_the_image_and_imposes_nothing_without_a_body():
    image, labels = _body_and_blobs(30)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    step = RefineStep("keep_near_midline", (1,), {"max_offset_mm": 5.0})
    with pytest.raises(ValueError, match="needs the image"):
        refine_labels(labels, (2.0,) * 3, [step], affine)
    with pytest.raises(ValueError, match="not on the labels' grid"):
        refine_labels(labels, (2.0,) * 3, [step], affine, image=image[:-1], modality="CT")
    air = np.full(image.shape, -1000.0, dtype=np.float32)
    out = refine_labels(labels, (2.0,) * 3, [step], affine, image=air, modality="CT")
    assert np.array_equal(out, labels)
