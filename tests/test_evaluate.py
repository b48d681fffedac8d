"""Evaluation: Dice/HD95/NSD per label against the real abdominal CT labels and exact shapes."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medrecon.errors import FormatError, InputError
from medrecon.export.colortable import write_color_csv, write_ctbl
from medrecon.io.nifti import write_nifti
from medrecon.labels import Label
from medrecon.train.evaluate import LabelMatchError, evaluate
from medrecon.train.label_inputs import (
    LabelMap,
    find_label_table,
    read_label_map,
    resample_nearest,
)
from medrecon.volume import Volume

SPACING = 3.0  # ct-abdomen labels are 3 mm isotropic
#: A few organs of different size and shape, to keep the tests quick.
ORGANS = ["spleen", "kidney_right", "liver", "aorta", "pancreas", "urinary_bladder"]


@pytest.fixture(scope="module")
def ref_path(shared_data) -> Path:
    return shared_data / "ct-abdomen" / "labels.nii.gz"


@pytest.fixture(scope="module")
def ref(ref_path) -> LabelMap:
    return read_label_map(ref_path)


def _value(ref: LabelMap, name: str) -> int:
    return next(v for v, n in ref.names.items() if n == name)


def _with(ref: LabelMap, array: np.ndarray, source: str = "pred") -> LabelMap:
    return LabelMap(ref.volume.with_array(array), dict(ref.names), source)


def _eroded(ref: LabelMap, name: str, voxels: int) -> np.ndarray:
    """``name`` loses every voxel within ``voxels`` (Euclidean) of its outside."""
    array = ref.volume.array.copy()
    mask = array == _value(ref, name)
    array[mask & (ndimage.distance_transform_edt(mask) <= voxels)] = 0
    return array


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _write_labels(folder: Path, vol: Volume, names: dict[int, str], stem="pred") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_nifti(vol, folder / f"{stem}.nii.gz")
    (folder / f"{stem}.labels.json").write_text(json.dumps({str(k): v for k, v in names.items()}))
    return path


def test_labels_against_themselves_are_perfect(ref_path, ref):
    result = evaluate(ref_path, ref_path)
    assert len(result.scores) == len(ref.names) == 59
    assert not result.resampled and result.warnings == []
    for s in result.scores:
        assert (s.status, s.dice, s.hd95_mm, s.nsd) == ("ok", 1.0, 0.0, 1.0), s.name
        assert s.ref_voxels == s.pred_voxels == int((ref.volume.array == s.ref_value).sum())
        assert s.ref_volume_ml == pytest.approx(s.ref_voxels * SPACING**3 / 1000)
    assert result.summary() == {
        "labels_scored": 59,
        "mean_dice": 1.0,
        "mean_hd95_mm": 0.0,
        "mean_nsd": 1.0,
    }


@pytest.mark.parametrize("voxels", [1, 2])
def test_eroded_liver_hd95_is_the_erosion_depth(ref, voxels):
    pred = _eroded(ref, "liver", voxels)
    result = evaluate(_with(ref, pred), ref, labels=["liver", "spleen"], tolerance_mm=2.0)
    liver, spleen = result.score("liver"), result.score("spleen")
    truth = ref.volume.array == 5
    assert liver.dice == pytest.approx(_dice(pred == 5, truth), abs=1e-6)
    # Eroded surface voxels lie ~depth from the original surface, within a voxel.
    assert abs(liver.hd95_mm - voxels * SPACING) <= SPACING
    # At 2 mm (< one 3 mm voxel) few boundary voxels agree; at depth + 0.5 voxel nearly all.
    assert liver.nsd < 0.3
    wide = evaluate(_with(ref, pred), ref, labels=["liver"], tolerance_mm=(voxels + 0.5) * SPACING)
    assert wide.score("liver").nsd > 0.95
    assert (spleen.dice, spleen.hd95_mm, spleen.nsd) == (1.0, 0.0, 1.0)
    assert liver.pred_voxels == int((pred == 5).sum()) < liver.ref_voxels


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_shifted_kidney_hd95_is_the_shift(ref, axis):
    value = _value(ref, "kidney_right")
    mask = ref.volume.array == value
    moved = np.zeros_like(mask)
    dst, src = [slice(None)] * 3, [slice(None)] * 3
    dst[axis], src[axis] = slice(2, None), slice(None, -2)
    moved[tuple(dst)] = mask[tuple(src)]
    pred = ref.volume.array.copy()
    pred[mask] = 0
    pred[moved] = value
    s = evaluate(_with(ref, pred), ref, labels=["kidney_right"]).scores[0]
    assert s.dice == pytest.approx(_dice(moved, mask), abs=1e-6)
    assert abs(s.hd95_mm - 2 * SPACING) <= SPACING


def _lps_permuted(vol: Volume) -> Volume:
    """Same voxels on disk flipped along i and j (RAS -> LPS) and with i, j swapped."""
    array = vol.array[::-1, ::-1, :].transpose(1, 0, 2)
    ni, nj, _ = vol.spatial_shape
    # new (a, b, c) holds old (ni-1-b, nj-1-a, c)
    new_to_old = np.array(
        [[0, -1, 0, ni - 1], [-1, 0, 0, nj - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float
    )
    return Volume(np.ascontiguousarray(array), vol.affine @ new_to_old)


def test_lps_reoriented_prediction_scores_the_same(ref_path, ref, tmp_path, caplog):
    pred = _eroded(ref, "liver", 1)
    ras = _write_labels(tmp_path / "ras", ref.volume.with_array(pred), ref.names)
    lps_vol = _lps_permuted(ref.volume.with_array(pred))
    lps = _write_labels(tmp_path / "lps", lps_vol, ref.names)
    assert nib.aff2axcodes(nib.load(lps).affine) == ("P", "L", "S")
    with caplog.at_level(logging.WARNING):
        a = evaluate(ras, ref_path, labels=ORGANS)
        b = evaluate(lps, ref_path, labels=ORGANS)
    assert caplog.records == []
    assert not b.resampled and b.warnings == []
    for sa, sb in zip(a.scores, b.scores):
        assert (sa.dice, sa.hd95_mm, sa.nsd, sa.pred_voxels) == (
            sb.dice,
            sb.hd95_mm,
            sb.nsd,
            sb.pred_voxels,
        )
    assert a.score("liver").dice < 1.0 and a.score("spleen").dice == 1.0


def test_lps_mr_labels_against_their_ras_copy(shared_data, tmp_path):
    # The MR labels are stored LPS on disk; nibabel's canonical (RAS) copy holds the same voxels.
    mr = shared_data / "mr-abdomen" / "labels.nii.gz"
    canonical = nib.as_closest_canonical(nib.load(mr))
    assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
    nib.save(canonical, tmp_path / "ras.nii.gz")
    (tmp_path / "labels.json").write_bytes((mr.parent / "labels.json").read_bytes())
    result = evaluate(tmp_path / "ras.nii.gz", mr)
    assert not result.resampled and result.warnings == [] and len(result.scores) > 5
    for s in result.scores:
        assert (s.dice, s.hd95_mm, s.nsd) == (1.0, 0.0, 1.0), s.name


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_distances_are_in_mm_along_each_axis(axis):
    # A one-voxel-thick plate moved by one voxel along its normal: every boundary voxel
    # is exactly one spacing from the other plate, so HD95 is that axis's spacing.
    spacing = (1.0, 2.0, 5.0)
    ref = np.zeros((12, 12, 12), np.uint8)
    pred = np.zeros_like(ref)
    plate = [slice(2, 10)] * 3
    plate[axis] = slice(5, 6)
    ref[tuple(plate)] = 1
    plate[axis] = slice(6, 7)
    pred[tuple(plate)] = 1
    affine = np.diag([*spacing, 1.0])
    names = {1: "plate"}

    def score(tolerance):
        return evaluate(
            LabelMap(Volume(pred, affine), names, "p"),
            LabelMap(Volume(ref, affine), names, "r"),
            tolerance_mm=tolerance,
        ).scores[0]

    s = score(spacing[axis] - 0.01)
    assert (s.status, s.dice, s.hd95_mm, s.nsd) == ("ok", 0.0, spacing[axis], 0.0)
    assert score(spacing[axis]).nsd == 1.0
    assert s.ref_volume_ml == pytest.approx(64 * 10.0 / 1000)


def test_prediction_on_another_grid_is_resampled_with_a_warning(ref_path, ref, tmp_path):
    import SimpleITK as sitk

    # Resampled onto a 2 mm grid by SimpleITK (not our code), then scored on the 3 mm grid.
    image = ref.volume.to_sitk()
    size = [int(n * SPACING / 2.0) for n in image.GetSize()]
    fine = sitk.Resample(
        image, size, sitk.Transform(), sitk.sitkNearestNeighbor, image.GetOrigin(),
        (2.0, 2.0, 2.0), image.GetDirection(), 0, image.GetPixelID(),
    )  # fmt: skip
    pred = _write_labels(tmp_path, Volume.from_sitk(fine), ref.names)
    result = evaluate(pred, ref_path, labels=ORGANS)
    assert result.resampled
    assert any("grids differ" in w and "2x2x2" in w and "3x3x3" in w for w in result.warnings)
    for s in result.scores:
        assert s.dice > 0.9, s.name
        assert s.hd95_mm <= SPACING, s.name


def test_cropped_prediction_warns_that_outside_is_background(ref):
    offset = np.eye(4)
    offset[2, 3] = 30  # the crop starts at slice 30
    cropped = Volume(ref.volume.array[:, :, 30:].copy(), ref.volume.affine @ offset)
    result = evaluate(LabelMap(cropped, ref.names, "cropped"), ref, labels=["liver", "sacrum"])
    assert result.resampled
    assert any("outside the prediction count as background" in w for w in result.warnings)
    sacrum = ref.volume.array == _value(ref, "sacrum")
    assert result.score("liver").dice == 1.0  # slices 70-111, inside the crop
    kept = sacrum.copy()
    kept[:, :, :30] = False
    assert result.score("sacrum").dice == pytest.approx(_dice(kept, sacrum), abs=1e-6)
    # slices 9-51: the part below slice 30 is lost
    assert result.score("sacrum").pred_voxels == kept.sum() < sacrum.sum()


def test_resample_nearest_is_exact_for_whole_voxel_shifts():
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    src = Volume(array, np.diag([2.0, 2.0, 2.0, 1.0]))
    # target voxel (i, j, k) sits at source voxel (i + 1, j, k - 2)
    target_affine = src.affine.copy()
    target_affine[:3, 3] = [2.0, 0.0, -4.0]
    target = Volume(np.zeros((4, 5, 6), np.int16), target_affine)
    out = resample_nearest(src, target, fill=-1)
    assert np.array_equal(out[:3, :, 2:], array[1:, :, :4])
    assert (out[3] == -1).all() and (out[:, :, :2] == -1).all()


def test_labels_matched_by_name_across_different_values(ref_path, ref, tmp_path):
    array = ref.volume.array.astype(np.uint8)
    shifted = np.where(array > 0, array + 150, 0).astype(np.uint8)
    names = {v + 150: n for v, n in ref.names.items()}
    folder = tmp_path / "other-values"
    folder.mkdir()
    path = write_nifti(ref.volume.with_array(shifted), folder / "seg.nii.gz")
    # Slicer's CSV colour table, with Slicer-style display names ("Kidney right").
    table = [Label(v, n.replace("_", " ").capitalize(), (1, 2, 3)) for v, n in names.items()]
    write_color_csv(folder / "seg.labels.csv", table)
    result = evaluate(path, ref_path, labels=ORGANS)
    assert [s.name for s in result.scores] == ORGANS
    for s in result.scores:
        assert s.pred_value == s.ref_value + 150
        assert (s.dice, s.hd95_mm, s.nsd) == (1.0, 0.0, 1.0)


def _slicerio_seg_nrrd(path: Path, vol: Volume, names: dict[int, str], offset: int) -> Path:
    """A .seg.nrrd written by slicerio, its segments' values moved by ``offset``."""
    import slicerio

    array = np.where(vol.array > 0, vol.array.astype(np.int32) + offset, 0).astype(np.uint8)
    present = sorted(set(np.unique(vol.array).tolist()) - {0})
    segments = [
        {"id": f"Segment_{v}", "labelValue": v + offset, "layer": 0, "name": names[v],
         "color": [0.5, 0.25, 0.75]}
        for v in present
    ]  # fmt: skip
    segmentation = {"voxels": array, "ijkToLPS": vol.lps_affine, "segments": segments}
    slicerio.write_segmentation(str(path), segmentation)
    return path


def test_seg_nrrd_prediction_scores_as_its_nifti(ref_path, ref, tmp_path):
    eroded = ref.volume.with_array(_eroded(ref, "liver", 1))
    nifti = _write_labels(tmp_path, eroded, ref.names)
    seg = _slicerio_seg_nrrd(tmp_path / "pred.seg.nrrd", eroded, ref.names, offset=100)
    a = evaluate(nifti, ref_path, labels=ORGANS)
    b = evaluate(seg, ref_path, labels=ORGANS)
    assert not b.resampled and b.warnings == []
    for sa, sb in zip(a.scores, b.scores):
        assert sb.pred_value == sa.pred_value + 100
        assert (sb.dice, sb.hd95_mm, sb.nsd) == (sa.dice, sa.hd95_mm, sa.nsd)
    assert b.score("liver").hd95_mm == 3.0


def test_medrecon_output_folders(ref, tmp_path):
    from medrecon.export.segnrrd import write_seg_nrrd

    table = [Label(v, n, (10, 20, 30)) for v, n in ref.names.items()]
    nifti_out, seg_out = tmp_path / "run-nifti", tmp_path / "run-seg"
    nifti_out.mkdir()
    seg_out.mkdir()
    write_nifti(ref.volume.with_array(_eroded(ref, "spleen", 1)), nifti_out / "labels.nii.gz")
    write_ctbl(nifti_out / "labels.ctbl", table)  # as `medrecon run` writes: both tables
    write_color_csv(nifti_out / "labels.labels.csv", table)
    write_seg_nrrd(seg_out / "segmentation.seg.nrrd", ref.volume, table)
    assert find_label_table(nifti_out / "labels.nii.gz").name == "labels.labels.csv"
    result = evaluate(nifti_out, seg_out, labels=ORGANS)
    assert result.pred_source.endswith("labels.nii.gz")
    assert result.ref_source.endswith("segmentation.seg.nrrd")
    assert result.score("spleen").hd95_mm == 3.0 and result.score("liver").dice == 1.0


def test_labels_only_one_table_names_are_reported(ref):
    # The prediction's table names only values 1-5, plus a structure the reference lacks.
    names = {v: n for v, n in ref.names.items() if v <= 5} | {200: "tumour"}
    pred = LabelMap(ref.volume, names, "pred")
    result = evaluate(pred, ref, labels=["liver", "aorta"])
    aorta = result.score("aorta")
    assert (aorta.pred_value, aorta.status, aorta.dice, aorta.pred_voxels) == (
        None,
        "missing_in_pred",
        0.0,
        0,
    )
    assert result.score("liver").dice == 1.0
    assert result.warnings == ["not in the prediction's label table (scored as missing): aorta"]
    everything = evaluate(pred, ref)
    assert len(everything.scores) == 59
    assert "not in the reference's label table (not scored): tumour" in everything.warnings
    assert any(w.endswith("and 44 more") for w in everything.warnings)


def test_missing_and_absent_labels_and_their_files(tmp_path):
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    ref = np.zeros((20, 20, 10), np.uint8)
    ref[2:8, 2:8, 2:6] = 1  # cube: in both
    ref[12:16, 12:16, 2:6] = 2  # only in the reference
    pred = np.zeros_like(ref)
    pred[2:8, 2:8, 2:6] = 1
    pred[12:15, 2:5, 6:9] = 4  # only in the prediction
    names = {1: "cube", 2: "lost", 3: "never", 4: "extra"}
    result = evaluate(
        LabelMap(Volume(pred, affine), names, "p"), LabelMap(Volume(ref, affine), names, "r")
    )
    by = {s.name: s for s in result.scores}
    assert (by["cube"].status, by["cube"].dice, by["cube"].hd95_mm) == ("ok", 1.0, 0.0)
    assert (by["lost"].status, by["lost"].dice, by["lost"].nsd) == ("missing_in_pred", 0.0, 0.0)
    assert by["lost"].hd95_mm == math.inf and by["lost"].ref_volume_ml == 64 * 4.5 / 1000
    assert by["extra"].status == "missing_in_ref" and by["extra"].pred_voxels == 27
    assert by["never"].status == "absent" and math.isnan(by["never"].dice)
    assert result.summary()["labels_scored"] == 3 and result.summary()["mean_dice"] == 1 / 3

    data = json.loads(result.write_json(tmp_path / "s.json").read_text())
    rows = {r["name"]: r for r in data["labels"]}
    assert rows["lost"]["hd95_mm"] is None and rows["lost"]["dice"] == 0.0
    assert rows["never"]["dice"] is None and "null" in data["notes"]
    with open(result.write_csv(tmp_path / "s.csv"), newline="") as f:
        table = {r["name"]: r for r in csv.DictReader(f)}
    assert float(table["lost"]["hd95_mm"]) == math.inf and math.isnan(float(table["never"]["nsd"]))
    assert float(table["cube"]["dice"]) == 1.0 and table["cube"]["pred_value"] == "1"
    assert "missing_in_pred" in result.table() and "mean" in result.table()


def test_no_table_on_one_side_matches_by_value(ref_path, ref, tmp_path):
    bare = write_nifti(ref.volume, tmp_path / "bare.nii.gz")
    result = evaluate(bare, ref_path, labels=["liver"])
    assert result.scores[0].dice == 1.0
    assert any("no label names" in w and "matched by value" in w for w in result.warnings)


def test_errors_say_what_and_where(ref_path, ref, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        evaluate(tmp_path / "nothing.nii.gz", ref_path)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file at all")
    with pytest.raises(FormatError, match=r"broken\.nii\.gz"):
        evaluate(broken, ref_path)
    with pytest.raises(InputError, match=r"no labels\.nii\.gz or segmentation\.seg\.nrrd"):
        evaluate(tmp_path, ref_path)
    text = tmp_path / "labels.txt"
    text.write_text("1 liver\n")
    with pytest.raises(FormatError, match="unsupported label map"):
        evaluate(text, ref_path)
    other = _with(ref, ref.volume.array)
    other = LabelMap(other.volume, {v: f"organ_{v}" for v in ref.names}, "other.nii.gz")
    with pytest.raises(LabelMatchError, match="no label name is in both maps"):
        evaluate(other, ref)
    with pytest.raises(LabelMatchError, match=r"\['lungs'\] not found"):
        evaluate(ref, ref, labels=["liver", "lungs"])
    with pytest.raises(InputError, match="tolerance"):
        evaluate(ref, ref, tolerance_mm=-1)
    float_map = write_nifti(ref.volume.with_array(ref.volume.array + 0.5), tmp_path / "f.nii.gz")
    with pytest.raises(FormatError, match="not whole numbers"):
        evaluate(float_map, ref_path)
    with pytest.raises(FormatError, match="negative values"):
        evaluate(ref_path.with_name("ct.nii.gz"), ref_path)
    assert issubclass(LabelMatchError, ValueError)


def test_cli_writes_csv_and_json(ref_path, ref, tmp_path, capsys):
    from medrecon.cli.evaluate import main

    eroded = ref.volume.with_array(_eroded(ref, "liver", 1))
    pred = _write_labels(tmp_path / "in", eroded, ref.names)
    out_csv, out_json = tmp_path / "out" / "scores.csv", tmp_path / "out" / "scores.json"
    argv = [str(pred), str(ref_path), "--labels", "liver,spleen", "--tolerance", "3.5"]
    assert main([*argv, "--csv", str(out_csv), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "NSD@3.5mm" in printed and "liver" in printed and "spleen" in printed
    data = json.loads(out_json.read_text())
    assert data["tolerance_mm"] == 3.5
    assert [r["name"] for r in data["labels"]] == ["liver", "spleen"]
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    liver = data["labels"][0]
    assert float(rows[0]["dice"]) == pytest.approx(liver["dice"], abs=1e-6)
    assert liver["hd95_mm"] == 3.0 and liver["nsd"] > 0.95 and data["labels"][1]["dice"] == 1.0
    # existing outputs are kept unless --overwrite
    assert main([*argv, "--csv", str(out_csv)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--csv", str(out_csv), "--overwrite"]) == 0
    assert main([str(pred), str(ref_path), "--labels", "lungs"]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_refuses_existing_output_before_reading_inputs(tmp_path, capsys):
    from medrecon.cli.evaluate import main

    existing = tmp_path / "s.json"
    existing.write_text("{}")
    assert main(["missing.nii.gz", "missing.nii.gz", "--json", str(existing)]) == 2
    assert "exist(s); pass --overwrite" in capsys.readouterr().err
    assert existing.read_text() == "{}"
    assert main(["missing.nii.gz", "missing.nii.gz"]) == 2
    assert "missing.nii.gz: no such file" in capsys.readouterr().err
