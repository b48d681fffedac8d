"""The shipped abdomen model off its training distribution: the MR subject it never saw
(through abdomen-mr), a thin axial slab of the CT (a limited scan), the CT in another
contrast phase; no phantom organs. Floors sit a little below the figures measured by
``benchmarks/bench_generalise.py`` (docs/models.md): they catch a regression, they
are not the project's goals, which the shipped weights do not all meet yet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medrecon.volume import Volume

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from generalise_cases import cut_slab, remap_by_name  # noqa: E402

#: Largest volume (mL) of a label predicted where the reference has none.
PHANTOM_ML = 5.0


@pytest.fixture(scope="module")
def segmenters():
    from medrecon.pipeline.segment import Segmenter

    return {name: Segmenter(name, device="cpu") for name in ("abdomen-ct", "abdomen-mr")}


def _case(shared: Path, folder: str, image: str, labels) -> tuple[Volume, np.ndarray]:
    from medrecon.io import load

    volume = load(shared / folder / image)
    table = json.loads((shared / folder / "labels.json").read_text())
    names = {int(k): v for k, v in table.items()}
    ref = np.asarray(nib.load(shared / folder / "labels.nii.gz").dataobj)
    return volume, remap_by_name(ref, names, labels)


def _scores(pred: np.ndarray, ref: np.ndarray, labels, voxel_ml: float):
    dice, phantom = {}, {}
    for value, name in labels:
        p, r = pred == value, ref == value
        if r.any():
            dice[name] = 2 * np.logical_and(p, r).sum() / (p.sum() + r.sum())
        elif p.sum() * voxel_ml > PHANTOM_ML:
            phantom[name] = round(float(p.sum() * voxel_ml), 1)
    return dice, phantom


def _labels(segmenter):
    return [(lab.value, lab.name) for lab in segmenter.pipeline.labels]


def test_shipped_weights_are_pinned_small_and_shared():
    from medrecon.pipeline.registry import load_pipeline

    ct, mr = load_pipeline("abdomen-ct"), load_pipeline("abdomen-mr")  # verify SHA-256
    assert ct.weights.sha256 and ct.weights.sha256 == mr.weights.sha256
    assert ct.weights.path.stat().st_size < 50 * 2**20


def test_held_out_mr_subject(shared_data, segmenters):
    seg = segmenters["abdomen-mr"]
    volume, ref = _case(shared_data, "mr-abdomen", "mr.nii.gz", _labels(seg))
    pred = seg(volume).labels.array
    # The MR is stored LPS; labels come back on its own grid.
    assert pred.shape == ref.shape
    dice, phantom = _scores(pred, ref, _labels(seg), float(np.prod(volume.spacing)) / 1000)
    # Regression floors under what the shipped weights measure (liver 0.89, spleen 0.83,
    # kidneys 0.66 / 0.60, aorta 0.81, IVC 0.65; docs/models.md). The kidneys are below
    # the project's goal of 0.75; these floors only catch a regression.
    floors = {
        "liver": 0.8,
        "spleen": 0.75,
        "kidney_right": 0.55,
        "kidney_left": 0.5,
        "aorta": 0.7,
        "inferior_vena_cava": 0.5,
    }
    low = {k: round(dice[k], 3) for k, floor in floors.items() if dice[k] < floor}
    assert not low, f"held-out MR Dice below the floors {floors}: {low}"
    assert not phantom, f"phantom organs on the MR: {phantom}"


def test_thin_slab_of_the_ct_keeps_its_organs(shared_data, segmenters):
    seg = segmenters["abdomen-ct"]
    volume, ref = _case(shared_data, "ct-abdomen", "ct.nii.gz", _labels(seg))
    # 45 mm (15 slices) at the level of the spleen and kidneys: where the old model,
    # trained on whole volumes only, found no organ at all.
    spleen = np.nonzero((ref == 1).any(axis=(0, 1)))[0]
    mid = int(np.median(spleen))
    slab = cut_slab(volume, mid - 7, mid + 8)
    pred = seg(slab).labels.array
    dice, phantom = _scores(pred, ref[..., mid - 7 : mid + 8], _labels(seg), 0.027)
    # Measured: spleen 0.96, kidneys 0.94 / 0.93, liver 0.97, aorta 0.94 (the previous
    # weights: liver 0.38, their known weak spot at a slab's upper edge).
    floors = {
        "spleen": 0.9,
        "kidney_right": 0.88,
        "kidney_left": 0.88,
        "liver": 0.9,
        "aorta": 0.88,
    }
    for organ, floor in floors.items():
        assert dice[organ] > floor, f"{organ}: Dice {dice[organ]:.3f} on a 45 mm slab"
    assert not phantom, f"phantom organs on the slab: {phantom}"


def test_top_slab_of_the_ct_padded_on_both_sides(shared_data, segmenters):
    seg = segmenters["abdomen-ct"]
    volume, ref = _case(shared_data, "ct-abdomen", "ct.nii.gz", _labels(seg))
    # The CT's last 10 slices (30 mm), where liver and spleen are at their widest. Alone,
    # they are padded with fill on both sides; the training CT never had fill above
    # them until the scan-end augmentation, and the stage-1 weights found 9 mL of liver
    # (of 563 mL) and no spleen here.
    n = volume.spatial_shape[2]
    pred = seg(cut_slab(volume, n - 10, n)).labels.array
    dice, phantom = _scores(pred, ref[..., n - 10 :], _labels(seg), 0.027)
    # Measured: spleen 0.94, liver 0.67 (stage 2: 0.82, 0.41). The stage-2 network
    # also called 200 mL of the liver "urinary bladder" here; the pipeline's keep_below
    # step removes such a bladder (it never lies above the liver). 16 mL of
    # kidney_right stays (stage 2: 37 mL): the known weak spot in docs/models.md, so
    # it is not asserted away.
    assert "urinary_bladder" not in phantom, f"bladder in the upper abdomen: {phantom}"
    assert dice["spleen"] > 0.75, f"spleen: Dice {dice['spleen']:.3f} on the top slab"
    assert dice["liver"] > 0.3, f"liver: Dice {dice['liver']:.3f} on the top slab"


def test_pelvic_slab_keeps_the_bladder_and_makes_no_organ_of_muscle(shared_data, segmenters):
    seg = segmenters["abdomen-ct"]
    volume, ref = _case(shared_data, "ct-abdomen", "ct.nii.gz", _labels(seg))
    # Slices 10-19 (30 mm centred at S +138): the bladder at its widest, no organ above
    # the pelvis. The stage-3 network calls gluteal muscle here "spleen" (16 mL) and a
    # 2.3 mL crumb "liver"; the anatomy rules remove both (keep_above), and the crumb,
    # under keep_below's 10 mL landmark size, no longer removes the bladder under it.
    pred = seg(cut_slab(volume, 10, 20)).labels.array
    dice, phantom = _scores(pred, ref[..., 10:20], _labels(seg), 0.027)
    # Measured: bladder 0.96.
    assert dice["urinary_bladder"] > 0.9, f"bladder: Dice {dice['urinary_bladder']:.3f}"
    assert not phantom, f"phantom organs on the pelvic slab: {phantom}"
    assert not (pred == 1).any(), "a spleen on a pelvic slab"


def test_portal_venous_phase_of_the_ct(shared_data, segmenters):
    from medrecon.train.phases import apply_phase, phase_groups, phase_targets

    seg = segmenters["abdomen-ct"]
    volume, ref = _case(shared_data, "ct-abdomen", "ct.nii.gz", _labels(seg))
    folder = shared_data / "ct-abdomen"
    source = np.asarray(nib.load(folder / "labels.nii.gz").dataobj)
    names = {int(k): v for k, v in json.loads((folder / "labels.json").read_text()).items()}
    hu = apply_phase(volume.array, source, phase_groups(names), phase_targets("portal_venous"))
    pred = seg(volume.with_array(hu)).labels.array
    dice, phantom = _scores(pred, ref, _labels(seg), 0.027)
    for organ in ("liver", "spleen", "kidney_right", "kidney_left", "aorta"):
        assert dice[organ] > 0.85, f"{organ}: Dice {dice[organ]:.3f} in the portal venous phase"
    assert not phantom


def test_chest_ct_of_another_patient_gets_no_bladder_or_kidney_in_the_chest(segmenters):
    """slicerio's chest CT (3x3x10 mm, unlabelled): lungs, heart and the top of the
    upper abdomen, nothing the training CT holds. The network calls mediastinum
    "urinary bladder" (46.5 mL) and soft tissue by the lung apex "kidney_left"
    (76.1 mL) there; keep_below_lungs removes what lies above the lung bases."""
    slicerio = pytest.importorskip("slicerio")
    from medrecon.io import load

    path = Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd"
    if not path.is_file():
        pytest.skip("slicerio ships no CTChest4.nrrd")
    seg = segmenters["abdomen-ct"]
    volume = load(path)
    pred = seg(volume).labels.array
    ml = abs(np.linalg.det(volume.affine[:3, :3])) / 1000.0
    found = {name: float((pred == value).sum() * ml) for value, name in _labels(seg)}
    # Measured: bladder 0 mL, kidney_left 1.7 mL, spleen 0 mL (46.5, 76.1 and 15.7 mL
    # without keep_below_lungs; the bladder 0.7 mL before remove_air_components).
    for organ in ("urinary_bladder", "kidney_left", "spleen"):
        assert found[organ] < PHANTOM_ML, f"{organ}: {found[organ]:.1f} mL in a chest CT"
