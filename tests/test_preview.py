"""preview.png: written, oriented by the affine, overlays where the labels are, legend."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medrecon.errors import InputError
from medrecon.export.palette import MIN_CHROMA, delta_e, srgb_to_lab
from medrecon.export.preview import render_preview, write_preview
from medrecon.labels import Label
from medrecon.volume import Volume, VolumeMeta

LEFT_BOX = Label(1, "left_box", (250, 20, 20))
ANTERIOR_BOX = Label(2, "anterior_box", (20, 250, 20))
ABSENT = Label(3, "absent", (20, 20, 250))
TABLE = (LEFT_BOX, ANTERIOR_BOX, ABSENT)


def phantom(affine: np.ndarray | None = None) -> tuple[Volume, Volume]:
    """A 0 HU CT cube on a RAS grid, a box on the patient's left and one anterior."""
    shape = (60, 50, 40)  # x (L->R), y (P->A), z (I->S)
    ct = np.zeros(shape, dtype=np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[5:15, 20:30, 15:25] = 1  # low x: patient's left
    labels[25:35, 38:46, 15:25] = 2  # high y: anterior
    affine = np.diag([1.0, 1.5, 2.0, 1.0]) if affine is None else affine
    meta = VolumeMeta(modality="CT")
    return Volume(ct, affine, meta), Volume(labels, affine)


def colour_mask(picture: np.ndarray, box, colour) -> np.ndarray:
    left, top, right, bottom = box
    return np.all(picture[top:bottom, left:right] == colour, axis=2)


def test_png_written_with_panels_legend_and_size(tmp_path):
    image, labels = phantom()
    path = write_preview(tmp_path / "preview.png", image, labels, TABLE)
    picture = Image.open(path)
    assert picture.format == "PNG" and picture.mode == "RGB"
    assert 600 < picture.width < 2000 and 300 < picture.height < 1200
    pixels = np.asarray(picture)
    for label in (LEFT_BOX, ANTERIOR_BOX):  # legend swatches (and outlines) in exact colour
        assert np.any(np.all(pixels == label.color, axis=2)), label.name
    assert not np.any(np.all(pixels == ABSENT.color, axis=2))  # only labels present
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]


def test_axial_panel_is_radiological_and_scaled_by_spacing():
    image, labels = phantom()
    preview = render_preview(image, labels, TABLE, panel_size=300)
    pixels = np.asarray(preview.image)
    left, top, right, bottom = preview.panels["axial"]
    # 60 x 1 mm wide, 50 x 1.5 mm tall: 75 mm is the panel's height
    assert (right - left) / (bottom - top) == pytest.approx(60 / 75, abs=0.02)
    rows, cols = np.nonzero(colour_mask(pixels, preview.panels["axial"], LEFT_BOX.color))
    assert cols.size and cols.mean() > (right - left) / 2  # patient left on the image right
    rows, cols = np.nonzero(colour_mask(pixels, preview.panels["axial"], ANTERIOR_BOX.color))
    assert rows.size and rows.mean() < (bottom - top) / 4  # anterior at the top
    # the fill is the label colour blended over the 0 HU grey, inside the outline
    grey = round((0 - (40 - 200)) / 400 * 255)
    expected = np.rint(0.65 * grey + 0.35 * np.array(LEFT_BOX.color))
    fill = colour_mask(pixels, preview.panels["axial"], expected)
    assert fill.sum() > 100


def test_neurological_convention_mirrors_axial_and_coronal():
    image, labels = phantom()
    radio = render_preview(image, labels, TABLE, convention="radiological")
    neuro = render_preview(image, labels, TABLE, convention="neurological")
    for view in ("axial", "coronal"):
        a = np.asarray(radio.image.crop(radio.panels[view])).astype(int)
        b = np.asarray(neuro.image.crop(neuro.panels[view])).astype(int)
        # same picture mirrored, except for the edge letters
        assert np.mean(a == b[:, ::-1]) > 0.97
    sag_a = np.asarray(radio.image.crop(radio.panels["sagittal"]))
    sag_b = np.asarray(neuro.image.crop(neuro.panels["sagittal"]))
    assert np.array_equal(sag_a, sag_b)


def test_lps_storage_gives_the_same_picture():
    image, labels = phantom()
    # the same voxels stored L->R reversed and P->A reversed: an LPS-ordered array
    flipped = np.diag([-1.0, -1.5, 2.0, 1.0])
    flipped[:3, 3] = image.affine[:3, :3] @ (np.array(image.shape) - 1) * [1, 1, 0]
    lps_image = Volume(image.array[::-1, ::-1], flipped, image.meta)
    lps_labels = Volume(labels.array[::-1, ::-1], flipped)
    a = render_preview(image, labels, TABLE)
    b = render_preview(lps_image, lps_labels, TABLE)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.center_ras == pytest.approx(b.center_ras)


def test_oblique_and_permuted_grids_render():
    image, labels = phantom()
    angle = math.radians(20)
    rot = np.array(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    oblique = np.eye(4)
    oblique[:3, :3] = rot @ np.diag([1.0, 1.5, 2.0])
    oblique_image = Volume(image.array, oblique, image.meta)
    preview = render_preview(oblique_image, Volume(labels.array, oblique), TABLE)
    assert set(preview.panels) == {"axial", "coronal", "sagittal"}
    permuted = np.eye(4)[:, [1, 0, 2, 3]] @ np.diag([1.0, 1.5, 2.0, 1.0])
    preview = render_preview(Volume(image.array, permuted), Volume(labels.array, permuted), TABLE)
    assert np.any(np.all(np.asarray(preview.image) == LEFT_BOX.color, axis=2))


def test_mr_uses_percentiles_and_empty_maps_render():
    image, labels = phantom()
    rng = np.random.default_rng(1)
    mr = Volume(rng.integers(0, 1000, image.shape).astype(np.int16), image.affine)
    preview = render_preview(mr, labels.with_array(np.zeros_like(labels.array)), TABLE)
    assert preview.panels["axial"][2] > preview.panels["axial"][0]


def test_bad_inputs_are_errors():
    image, labels = phantom()
    with pytest.raises(InputError, match="same grid"):
        render_preview(image, Volume(np.zeros((4, 4, 4), np.uint8), np.eye(4)), TABLE)
    with pytest.raises(InputError, match="convention"):
        render_preview(image, labels, TABLE, convention="sideways")


def _real_ct(shared_data):
    data = shared_data / "ct-abdomen"
    ct = Volume.from_nibabel(nib.load(data / "ct.nii.gz"), VolumeMeta(modality="CT"))
    labels = Volume.from_nibabel(nib.load(data / "labels.nii.gz"))
    names = json.loads((data / "labels.json").read_text())
    from medrecon.labels.terminology import describe

    table = tuple(describe(name, int(value)) for value, name in names.items())
    return ct, labels, table


def test_real_ct_preview(shared_data, tmp_path):
    ct, labels, table = _real_ct(shared_data)
    path = write_preview(tmp_path / "preview.png", ct, labels, table)
    pixels = np.asarray(Image.open(path))
    preview = render_preview(ct, labels, table)
    liver = next(label for label in table if label.name == "liver")
    assert np.any(np.all(pixels == preview.colours[liver.value], axis=2))
    assert np.array_equal(pixels, np.asarray(preview.image))


def test_real_ct_overlay_colours_are_distinct(shared_data):
    """59 labels: terminology colours repeat (the kidneys) or nearly (liver, stomach);
    the overlay's are at least ΔE 20 apart for every pair."""
    ct, labels, table = _real_ct(shared_data)
    by_name = {label.name: label for label in table}
    assert by_name["kidney_left"].color == by_name["kidney_right"].color  # why this matters
    preview = render_preview(ct, labels, table)
    found = set(np.unique(labels.array).tolist()) - {0}
    assert set(preview.colours) == found and len(found) == 59
    colours = np.array([preview.colours[v] for v in sorted(found)])
    distance = delta_e(colours[:, None], colours[None])
    np.fill_diagonal(distance, np.inf)
    assert distance.min() >= 20.0
    lab = srgb_to_lab(colours)
    assert np.hypot(lab[:, 1], lab[:, 2]).min() >= MIN_CHROMA  # colour, not a grey
    # The largest organ keeps its Slicer colour; the Slicer table itself is untouched.
    counts = np.bincount(np.asarray(labels.array).ravel())
    largest = max(table, key=lambda label: counts[label.value])
    assert preview.colours[largest.value] == largest.color
    assert by_name["kidney_left"].color == (185, 102, 83)


def test_real_ct_every_label_shows_and_marks_are_off_the_anatomy(shared_data):
    ct, labels, table = _real_ct(shared_data)
    preview = render_preview(ct, labels, table)
    pixels = np.asarray(preview.image)
    found = set(np.unique(labels.array).tolist()) - {0}
    assert preview.missing == []
    assert set().union(*preview.shown.values()) == found
    assert {"axial", "coronal", "sagittal"} <= set(preview.panels)
    # Read back from the picture: each label's outline colour in at least one panel.
    for value in found:
        hits = sum(
            int(colour_mask(pixels, box, preview.colours[value]).sum())
            for box in preview.panels.values()
        )
        assert hits >= 3, value
    exact = np.all(pixels == (255, 255, 0), axis=2)  # the letters' fully inked pixels
    inked = (pixels[..., 0] > 120) & (pixels[..., 1] > 120) & (pixels[..., 2] < 60)
    assert (255, 255, 0) not in preview.colours.values()
    for name, (left, top, right, bottom) in preview.panels.items():
        assert not exact[top:bottom, left:right].any(), name  # no letter on the image
        ring = np.zeros(pixels.shape[:2], dtype=bool)
        ring[top - 16 : bottom + 16, left - 16 : right + 16] = True
        ring[top:bottom, left:right] = False
        assert inked[ring].sum() > 40, name  # four letters around it
        # and little else there (anti-aliased letter edges): the gutter is background
        other = ring & ~inked
        assert np.count_nonzero(pixels[other].max(axis=1) > 60) < 0.02 * other.sum(), name


def test_neighbours_with_one_colour_get_two_in_the_overlay():
    image, labels = phantom()
    same = (Label(1, "kidney_right", (185, 102, 83)), Label(2, "kidney_left", (185, 102, 83)))
    preview = render_preview(image, labels, same)
    a, b = preview.colours[1], preview.colours[2]
    assert float(delta_e(a, b)) >= 25.0
    assert (185, 102, 83) in (a, b)  # one keeps the terminology colour
    pixels = np.asarray(preview.image)
    for colour in (a, b):  # and the legend shows the overlay colour
        assert np.any(np.all(pixels == colour, axis=2))


def test_a_small_label_off_the_centroid_gets_a_panel():
    """A 3-voxel-thick box far from the others: no slice through the centroid cuts it."""
    image, labels = phantom()
    arr = labels.array.copy()
    arr[50:56, 2:6, 2:5] = 3  # right-posterior-inferior corner
    arr[5:15, 20:30, 15:25] = 0
    arr[40:50, 35:45, 30:38] = 1  # left box moved up and anterior
    table = (*TABLE[:2], Label(3, "corner", (20, 20, 250)))
    preview = render_preview(image, labels.with_array(arr), table)
    assert preview.missing == []
    assert set().union(*preview.shown.values()) == {1, 2, 3}
    pixels = np.asarray(preview.image)
    corner = sum(
        int(colour_mask(pixels, box, preview.colours[3]).sum()) for box in preview.panels.values()
    )
    assert corner > 0


def test_slice_areas_sampled_planes_keep_one_voxel_labels():
    from medrecon.export.preview_planes import slice_areas

    lab = np.zeros((300, 280, 20), dtype=np.uint8)  # 84,000-voxel axial planes: sampled
    lab[10:110, 20:120, 5:15] = 1
    lab[151, 77, 9] = 2  # odd row and column: missed by every-2nd sampling
    axial = slice_areas(lab, [1, 2])[2]
    assert axial[0].tolist() == [0] * 5 + [100 * 100] * 10 + [0] * 5
    assert axial[1].tolist() == [0] * 9 + [1] + [0] * 10
