"""The air around the body (pipeline/body.py) and the refine step that clears it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medrecon.pipeline.body import outside_body
from medrecon.pipeline.config import RefineStep
from medrecon.pipeline.refine import refine_labels

SPACING = (1.0, 1.0, 2.0)  # mm; the third axis runs along the body
AFFINE = np.diag([*SPACING, 1.0])


def _body():
    """A CT: air (-1000 HU) around a body (40 HU, x and y 20..59) along 20 slices, with
    a pocket of gas (x 35..44, y 35..44) enclosed by it, like a stomach's."""
    image = np.full((80, 80, 20), -1000.0, dtype=np.float32)
    image[20:60, 20:60, :] = 40.0
    image[35:45, 35:45, :] = -1000.0
    return image


def _labels():
    labels = np.zeros((80, 80, 20), dtype=np.uint8)
    labels[0:5, 0:5, 5:10] = 1  # air 15+ mm from the body: goes
    labels[14:18, 30:34, 5:10] = 1  # air 2-6 mm from the body: within the margin, stays
    labels[36:44, 36:44, 5:10] = 2  # the enclosed gas: stays
    labels[25:30, 25:30, 5:10] = 3  # inside the body: stays
    return labels


def test_outside_is_the_air_that_reaches_the_slice_edge_beyond_the_margin():
    """Found on a 2 mm grid with one sample of slack: air farther than the margin
    plus 4 mm (two samples) from the body is outside, nearer air never."""
    image = _body()
    for margin in (0.0, 10.0):
        out = outside_body(image, AFFINE, margin_mm=margin)
        near = int(margin)  # voxels of 1 mm in-plane
        assert not out[20 - near : 60 + near, 20 - near : 60 + near].any()
        far = near + 4
        assert out[: 20 - far].all() and out[60 + far :].all()
        assert out[:, : 20 - far].all() and out[:, 60 + far :].all()


@pytest.mark.parametrize("axes", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_outside_is_found_in_axial_slices_whatever_the_array_order(axes):
    image = _body()
    want = outside_body(image, AFFINE, 10.0)
    moved_affine = np.eye(4)
    moved_affine[:3, :3] = AFFINE[:3, :3][:, list(axes)]
    got = outside_body(np.transpose(image, axes), moved_affine, 10.0)
    assert np.array_equal(got, np.transpose(want, axes))


def _acts_on_ct_only_and_needs_the_image(labels, step, image):
    """HU mean nothing on an MR: the step leaves ``labels`` alone; without the image it
    refuses to run."""
    out = refine_labels(labels, SPACING, [step], AFFINE, image=image, modality="MR")
    assert np.array_equal(out, labels)
    with pytest.raises(ValueError, match="needs the image"):
        refine_labels(labels, SPACING, [step], AFFINE, modality="CT")


def test_keep_inside_body_clears_labels_in_the_air_around_the_body_on_ct_only():
    image, labels = _body(), _labels()
    step = RefineStep("keep_inside_body", None, {"margin_mm": 10.0})
    out = refine_labels(labels, SPACING, [step], AFFINE, image=image, modality="CT")
    want = labels.copy()
    want[0:5, 0:5, 5:10] = 0
    assert np.array_equal(out, want)
    # Only the labels named.
    named = RefineStep("keep_inside_body", (2, 3), {"margin_mm": 10.0})
    out = refine_labels(labels, SPACING, [named], AFFINE, image=image, modality="CT")
    assert np.array_equal(out, labels)
    _acts_on_ct_only_and_needs_the_image(labels, step, image)
    with pytest.raises(ValueError, match="affine"):
        refine_labels(labels, SPACING, [step], image=image, modality="CT")


def test_no_reference_organ_of_the_real_ct_lies_in_the_air_around_it(shared_data):
    """All 59 reference structures of the real CT (organs, bones, muscles, the stomach
    with its gas) lie where the step keeps labels, even with no margin: it removes
    nothing a scan's anatomy holds."""
    nib = pytest.importorskip("nibabel")
    ct = nib.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    labels = np.asarray(nib.load(shared_data / "ct-abdomen" / "labels.nii.gz").dataobj)
    outside = outside_body(np.asarray(ct.dataobj), ct.affine, margin_mm=0.0)
    assert outside.mean() > 0.1  # the scan has air around the body
    assert not (outside & (labels > 0)).any()


def test_remove_air_components_drops_the_parts_that_read_as_air_on_ct_only():
    """A label with one part in the body's tissue and one in its enclosed gas: the gas
    part goes, the tissue part stays; a label not named keeps its gas (a stomach's)."""
    image = _body()
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[25:30, 25:30, 5:10] = 1  # tissue: stays
    labels[37:43, 37:43, 5:10] = 1  # the enclosed gas: goes
    labels[36:44, 36:44, 12:16] = 2  # gas too, but label 2 is not named: stays
    step = RefineStep("remove_air_components", (1, 3), {})
    out = refine_labels(labels, SPACING, [step], AFFINE, image=image, modality="CT")
    want = labels.copy()
    want[37:43, 37:43, 5:10] = 0
    assert np.array_equal(out, want)
    # A part half in tissue, half in gas, goes only if its median is air.
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[30:41, 36:44, 5:10] = 1  # x 30..34 tissue, 35..40 gas: 6 of 11 rows air
    out = refine_labels(labels, SPACING, [step], AFFINE, image=image, modality="CT")
    assert not out.any()
    labels[39:41] = 0  # now x 30..34 tissue, 35..38 gas: 4 of 9 rows air
    out = refine_labels(labels, SPACING, [step], AFFINE, image=image, modality="CT")
    assert np.array_equal(out, labels)
    _acts_on_ct_only_and_needs_the_image(want, step, image)


def test_no_organ_of_the_real_ct_reads_as_air(shared_data):
    """Every component of the real CT's ten reference organs but the stomach has its
    median in tissue: the step removes none of them."""
    nib = pytest.importorskip("nibabel")
    ct = nib.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    labels = np.asarray(nib.load(shared_data / "ct-abdomen" / "labels.nii.gz").dataobj)
    image = np.asarray(ct.dataobj)
    names = json.loads((shared_data / "ct-abdomen" / "labels.json").read_text())
    solid = {"spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "aorta"}
    solid |= {"inferior_vena_cava", "pancreas", "urinary_bladder"}
    organs = tuple(int(v) for v, name in names.items() if name in solid)
    assert len(organs) == 9
    step = RefineStep("remove_air_components", organs, {})
    spacing = tuple(float(s) for s in ct.header.get_zooms()[:3])
    out = refine_labels(labels, spacing, [step], ct.affine, image=image, modality="CT")
    assert np.array_equal(out, labels)
