"""Foreign models through everything downstream: ``medrecon run --model`` writes every
output, read back by the tools users use, and cohorts run them on both engines.

The MONAI bundle here is the threshold bundle of ``bundle_helpers``: its labels are
known in closed form, so each output can be checked against the truth.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from bundle_helpers import METADATA, make_bundle, phantom

from medrecon.cli.main import main
from medrecon.cohort import CohortSpec, EngineSettings, StudySettings, run_cohort
from medrecon.io.nifti import write_nifti
from medrecon.models.ref import ModelRef
from medrecon.study.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "ct-abdomen"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("threshold") / "bundle")


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory) -> tuple[Path, np.ndarray]:
    vol, expected = phantom()
    path = tmp_path_factory.mktemp("phantom") / "phantom.nii.gz"
    write_nifti(vol, path)
    return path, expected


def test_run_with_a_bundle_writes_every_output(bundle, phantom_file, tmp_path, capsys) -> None:
    import slicerio

    source, expected = phantom_file
    out = tmp_path / "out"
    argv = ["run", str(source), "-o", str(out), "--model", str(bundle), "--trust-bundle"]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "MONAI bundle" in printed  # the kind found is said

    labels = nib.load(out / "labels.nii.gz")
    np.testing.assert_array_equal(np.asarray(labels.dataobj), expected)
    np.testing.assert_allclose(labels.affine, nib.load(source).affine)

    record = json.loads((out / "run.json").read_text())
    assert record["pipeline"]["engine"] == "bundle"
    assert record["pipeline"]["choice"].startswith("given: MONAI bundle")
    assert record["labels_found"] == ["spleen", "liver"]

    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    by_name = {s["name"]: s for s in seg["segments"]}
    assert set(by_name) == {"spleen", "liver"}
    # Coded as Slicer expects: SNOMED CT spleen / liver.
    assert by_name["spleen"]["terminology"]["type"] == ["SCT", "78961009", "Spleen"]
    assert by_name["liver"]["terminology"]["type"] == ["SCT", "10200004", "Liver"]
    for name in ("spleen", "liver"):
        assert (out / "meshes" / f"{name}.stl").stat().st_size > 0
    rows = {r["name"]: r for r in json.loads((out / "stats.json").read_text())["labels"]}
    voxel_ml = float(np.prod(np.abs(np.diag(labels.affine)[:3]))) / 1000.0
    for value, name in ((1, "spleen"), (2, "liver")):
        assert rows[name]["volume_ml"] == pytest.approx((expected == value).sum() * voxel_ml)
    assert (out / "scene.mrml").is_file() and (out / "preview.png").is_file()


def test_run_with_a_bundle_on_dicom_writes_a_dicom_seg(bundle, tmp_path) -> None:
    out = tmp_path / "out"
    result = run_study(SAMPLE, out, model=ModelRef(str(bundle), trust=True))
    assert result.status == "complete" and "seg.dcm" in result.outputs
    ds = pydicom.dcmread(out / "seg.dcm")
    names = {s.SegmentLabel for s in ds.SegmentSequence}
    assert names == set(result.labels_found) and names <= {"spleen", "liver"}
    source_uids = {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in SAMPLE.iterdir()
    }
    referenced = {
        ref.ReferencedSOPInstanceUID
        for series in ds.ReferencedSeriesSequence
        for ref in series.ReferencedInstanceSequence
    }
    assert referenced and referenced <= source_uids


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_cohort_runs_a_bundle_loaded_once_per_worker(
    bundle, phantom_file, tmp_path, engine
) -> None:
    if engine == "ray":
        pytest.importorskip("ray")
    source, expected = phantom_file
    studies = tmp_path / "studies"
    for name in ("a", "b"):
        (studies / name).mkdir(parents=True)
        (studies / name / "image.nii.gz").write_bytes(source.read_bytes())
    ref = ModelRef(str(bundle), trust=True)
    spec = CohortSpec(StudySettings(model=ref), EngineSettings(kind=engine, workers=1))
    result = run_cohort(studies, tmp_path / "out", spec)
    assert result.ok and len(result.complete) == 2
    for name in ("a", "b"):
        labels = nib.load(tmp_path / "out" / name / "labels.nii.gz")
        np.testing.assert_array_equal(np.asarray(labels.dataobj), expected)
    header = (tmp_path / "out" / "cohort.csv").read_text().splitlines()[0]
    assert "spleen" in header and "liver" in header


def test_a_bundle_without_trust_is_refused(bundle, phantom_file, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["run", str(phantom_file[0]), "-o", str(out), "--model", str(bundle)]) == 2
    assert "--trust-bundle" in capsys.readouterr().err and not out.exists()


def test_an_unknown_label_name_gets_a_generic_code_and_a_warning(phantom_file, tmp_path) -> None:
    import slicerio

    metadata = copy.deepcopy(METADATA)
    channels = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    channels["2"] = "mystery_blob"
    bundle = make_bundle(tmp_path / "bundle", metadata=metadata)
    result = run_study(phantom_file[0], tmp_path / "out", model=ModelRef(str(bundle), trust=True))
    assert result.labels_found == ["spleen", "mystery_blob"]
    assert any("'mystery_blob'" in w and "generic" in w for w in result.warnings)
    seg = slicerio.read_segmentation(str(tmp_path / "out" / "segmentation.seg.nrrd"))
    blob = next(s for s in seg["segments"] if s["name"] == "mystery_blob")
    assert blob["terminology"]["type"][:2] == ["SCT", "91723000"]


# -- nnU-Net v2 and TotalSegmentator: the same outputs from their engines -----------------


@pytest.fixture(scope="module")
def ct_crop(shared_data, tmp_path_factory) -> Path:
    """A crop of the real CT, stored LPS-like (i and j flipped) unlike the training data."""
    ct = nib.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    box = (slice(10, 110), slice(15, 85), slice(56, 112))
    affine = ct.affine.copy()
    affine[:3, 3] = ct.affine[:3, :3] @ [b.start for b in box] + ct.affine[:3, 3]
    image = nib.Nifti1Image(np.asarray(ct.dataobj)[box].astype(np.int16), affine)
    image = image.as_reoriented(np.array([[0, -1], [1, -1], [2, 1]]))
    path = tmp_path_factory.mktemp("ct-crop") / "ct.nii.gz"
    nib.save(image, path)
    return path


def test_run_with_an_nnunet_folder_writes_every_output(nnunet_folder, ct_crop, tmp_path, capsys):
    import slicerio

    from medrecon.foreign.nnunet import load_nnunet
    from medrecon.io.nifti import read_nifti
    from medrecon.models.engines import build_engine

    dataset = nnunet_folder.parent  # DatasetNNN_Name: the configuration is chosen
    out = tmp_path / "out"
    argv = ["run", str(ct_crop), "-o", str(out), "--model", str(dataset), "--folds", "0"]
    assert main([*argv, "--no-tta", "--no-progress"]) == 0
    assert "nnU-Net v2 results folder" in capsys.readouterr().out

    # The same labels the engine gives with the same options, on the input's grid.
    volume = read_nifti(ct_crop)
    engine = build_engine(load_nnunet(dataset, folds=(0,), tta=False), device="cpu")
    expected = engine(volume).labels.array
    labels = nib.load(out / "labels.nii.gz")
    np.testing.assert_array_equal(np.asarray(labels.dataobj), expected)
    np.testing.assert_allclose(labels.affine, nib.load(ct_crop).affine)

    record = json.loads((out / "run.json").read_text())
    assert record["pipeline"]["engine"] == "nnunet"
    assert "folds 0, mirroring off" in record["pipeline"]["choice"]  # the options it ran with
    found = record["labels_found"]
    assert len(found) >= 3 and set(found) <= {
        "liver",
        "spleen",
        "kidney_left",
        "kidney_right",
        "stomach",
    }
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    assert {s["name"] for s in seg["segments"]} == set(found)
    liver = next(s for s in seg["segments"] if s["name"] == "liver")
    assert liver["terminology"]["type"] == ["SCT", "10200004", "Liver"]
    assert all((out / "meshes" / f"{name}.stl").is_file() for name in found)
    assert (out / "stats.csv").is_file() and (out / "scene.mrml").is_file()


def test_a_cohort_runs_an_nnunet_folder(nnunet_folder, ct_crop, tmp_path) -> None:
    studies = tmp_path / "studies"
    for name in ("a", "b"):
        (studies / name).mkdir(parents=True)
        (studies / name / "ct.nii.gz").write_bytes(ct_crop.read_bytes())
    ref = ModelRef(str(nnunet_folder), folds=(0,), tta=False)
    spec = CohortSpec(StudySettings(model=ref), EngineSettings(workers=1))
    result = run_cohort(studies, tmp_path / "out", spec)
    assert result.ok and len(result.complete) == 2
    first = np.asarray(nib.load(tmp_path / "out" / "a" / "labels.nii.gz").dataobj)
    second = np.asarray(nib.load(tmp_path / "out" / "b" / "labels.nii.gz").dataobj)
    np.testing.assert_array_equal(first, second)
    assert len(np.unique(first)) >= 3


def test_run_with_totalsegmentator_weights(tmp_path, ct_crop, monkeypatch, capsys) -> None:
    import slicerio
    from totalseg_fixture import write_totalseg_home

    from medrecon.foreign.totalseg import task_spec

    home = tmp_path / "totalseg-home"
    write_totalseg_home(home, "total", "fast")
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    out = tmp_path / "out"
    argv = ["run", str(ct_crop), "-o", str(out), "--model", "totalsegmentator:total:fast"]
    assert main([*argv, "--no-progress", "--outputs", "labels,seg_nrrd,stats"]) == 0
    assert "TotalSegmentator task" in capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert record["pipeline"]["engine"] == "totalsegmentator"
    classes = task_spec("total", "fast").classes
    values = set(np.unique(np.asarray(nib.load(out / "labels.nii.gz").dataobj)).tolist()) - {0}
    assert values and {classes[v] for v in values} == set(record["labels_found"])
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    # Every segment named as TotalSegmentator names it, and coded (no generic fallback).
    assert {s["name"] for s in seg["segments"]} == set(record["labels_found"])
    assert all(s["terminology"]["type"][1] != "91723000" for s in seg["segments"])


def test_missing_totalsegmentator_weights_name_where_medrecon_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    out = tmp_path / "out"
    assert main(["run", str(SAMPLE), "-o", str(out), "--model", "totalsegmentator:total"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "totalseg_download_weights" in err
    assert not out.exists()
