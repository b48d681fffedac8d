"""``medrecon run`` end to end, in-process: a DICOM study in, every output out and read back.

The network is the small UNet trained in this session (``ball_pipeline``), so
the labels are real predictions; the study is written as real DICOM series.
"""

from __future__ import annotations

import json
import zipfile
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pipeline_helpers import ball_ct

from medrecon.cli.main import main
from medrecon.errors import InputError, NoImageError, OutputExistsError
from medrecon.io.nifti import write_nifti
from medrecon.pipeline.config import OUTPUTS
from medrecon.study.output_options import OutputOptions
from medrecon.study.runner import is_complete, run_study
from medrecon.testing.dicom_series import write_ct_series
from medrecon.volume import Volume

#: Every output (the test pipeline lists only labels and stats).
EVERY = OutputOptions(outputs=OUTPUTS)

EVERY_FILE = {
    "image.nii.gz",
    "labels.nii.gz",
    "labels.labels.csv",
    "labels.ctbl",
    "segmentation.seg.nrrd",
    "meshes/ball.stl",
    "scene.mrml",
    "seg.dcm",
    "stats.csv",
    "stats.json",
    "preview.png",
    "run.json",
}


def _affine(spacing, origin):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study folder with two CT series: a 3-slice localiser-like stack and the ball CT."""
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(7)
    image, mask = ball_ct((56, 48, 40), (28, 22, 20), (13, 10, 9), rng)
    affine = _affine((1.8, 1.8, 2.2), (-50.0, -40.0, 10.0))
    write_ct_series(image, affine, root / "ct" / "s2", series_number=2, series_description="ball")
    small, _ = ball_ct((56, 48, 3), (28, 22, 1), (13, 10, 2), rng)
    write_ct_series(small, affine, root / "ct" / "s1", series_number=1, series_description="few")
    return root / "ct", mask, affine


@pytest.fixture(scope="module")
def full_run(study, ball_pipeline, tmp_path_factory):
    folder, _, _ = study
    out = tmp_path_factory.mktemp("runs") / "out"
    stages = []
    result = run_study(
        folder,
        out,
        pipeline=ball_pipeline,
        device="cpu",
        output_options=EVERY,  # the test pipeline lists only labels and stats
        progress=lambda stage, seconds: stages.append((stage, seconds)),
    )
    return result, out, stages


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_every_output_is_written_and_listed(full_run):
    result, out, stages = full_run
    assert result.status == "complete"
    assert _files(out) == EVERY_FILE
    record = json.loads((out / "run.json").read_text())
    assert set(record["outputs"]) == EVERY_FILE
    assert record["status"] == "complete"
    assert is_complete(out)
    # No temporary folder is left beside the output.
    assert [p.name for p in out.parent.iterdir()] == ["out"]
    heard: dict[str, float] = {}
    for stage, seconds in stages:
        heard[stage] = heard.get(stage, 0.0) + seconds
    for stage in ("load_model", "load", "segment", "labels", "meshes", "scene", "dicom_seg"):
        # run.json holds what the progress callback heard, rounded to the millisecond.
        assert record["timings_s"][stage] == round(heard[stage], 3)
    top = {k: v for k, v in record["timings_s"].items() if "." not in k}
    assert set(top) == set(heard)  # every stage reported, none invented
    started = datetime.fromisoformat(record["started"])
    finished = datetime.fromisoformat(record["finished"])
    assert sum(heard.values()) <= (finished - started).total_seconds() + 1.0  # 1 s: rounding


def test_the_ball_series_is_chosen_and_recorded(full_run, study, ball_pipeline):
    result, out, _ = full_run
    record = json.loads((out / "run.json").read_text())
    assert result.pipeline == "test-ball"
    # The kind of model found, its name and the file it was read from.
    assert record["pipeline"]["choice"] == f"given: medrecon pipeline test-ball ({ball_pipeline})"
    assert record["pipeline"]["engine"] == "native"
    assert result.series_number == 2
    assert record["input"]["series_number"] == 2
    assert "the only suitable series of 2" in record["input"]["series_choice"]
    assert record["input"]["kind"] == "dicom"
    assert record["pipeline"]["name"] == "test-ball"
    assert len(record["pipeline"]["weights_sha256"]) == 64
    assert record["device"] == "cpu"
    assert {"medrecon", "torch", "monai", "pydicom"} <= set(record["versions"])


def test_labels_line_up_with_the_image_and_the_source(full_run, study):
    _, out, _ = full_run
    _, mask, affine = study
    image = nib.load(out / "image.nii.gz")
    labels = nib.load(out / "labels.nii.gz")
    np.testing.assert_allclose(labels.affine, image.affine, atol=1e-6)
    assert int(labels.header["sform_code"]) == 1 and int(labels.header["qform_code"]) == 1
    # The DICOM grid is LPS-ordered; back in RAS order it is the grid the study was made on.
    canonical = nib.as_closest_canonical(labels)
    np.testing.assert_allclose(canonical.affine, affine, atol=1e-4)
    pred = np.asarray(canonical.dataobj) == 1
    dice = 2 * np.logical_and(pred, mask).sum() / (pred.sum() + mask.sum())
    assert dice > 0.9


def test_stats_and_dicom_seg_describe_the_same_label(full_run, study):
    _, out, _ = full_run
    rows = json.loads((out / "stats.json").read_text())
    rows = rows["labels"] if isinstance(rows, dict) else rows
    assert [r["name"] for r in rows] == ["ball"]
    voxels = int((np.asarray(nib.load(out / "labels.nii.gz").dataobj) == 1).sum())
    assert rows[0]["voxel_count"] == voxels
    assert rows[0]["volume_ml"] == pytest.approx(voxels * 1.8 * 1.8 * 2.2 / 1000, rel=1e-6)
    seg = pydicom.dcmread(out / "seg.dcm")
    assert seg.Modality == "SEG"
    assert seg.SegmentSequence[0].SegmentLabel == "ball"
    source = pydicom.dcmread(sorted((study[0] / "s2").iterdir())[0], stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID


def test_scene_names_every_file_by_relative_path(full_run):
    _, out, _ = full_run
    scene = (out / "scene.mrml").read_text()
    for rel in ("image.nii.gz", "segmentation.seg.nrrd", "meshes/ball.stl"):
        assert rel in scene
    assert str(out) not in scene  # relative, so the folder can move


def test_existing_output_is_refused_and_left_alone(full_run, study, ball_pipeline):
    _, out, _ = full_run
    before = {rel: (out / rel).read_bytes() for rel in _files(out)}
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_study(study[0], out, pipeline=ball_pipeline, device="cpu")
    assert {rel: (out / rel).read_bytes() for rel in _files(out)} == before


def test_cli_series_mesh_format_and_overwrite(study, ball_pipeline, tmp_path, capsys):
    folder, _, _ = study
    out = tmp_path / "cli"
    args = ["run", str(folder), "-o", str(out), "--pipeline", str(ball_pipeline)]
    args += ["--device", "cpu", "--mesh-format", "obj", "--no-dicom-seg", "--mrb"]
    args += ["--outputs", ",".join(OUTPUTS)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "labels found: ball" in captured.out
    assert "segment" in captured.err  # stage progress
    files = _files(out)
    assert "meshes/ball.obj" in files and "scene.mrb" in files
    assert "seg.dcm" not in files
    assert zipfile.is_zipfile(out / "scene.mrb")
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    args.remove("--mrb")  # a scene-less run has nothing to pack
    assert main([*args, "--overwrite", "--outputs", "labels,stats"]) == 0
    assert _files(out) == {
        "labels.nii.gz",
        "labels.labels.csv",
        "labels.ctbl",
        "stats.csv",
        "stats.json",
        "run.json",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["cli"]


def test_series_option_and_unsuitable_series(study, ball_pipeline, tmp_path):
    folder, _, _ = study
    with pytest.raises(NoImageError, match="only 3 slice"):
        run_study(folder, tmp_path / "o", pipeline=ball_pipeline, device="cpu", series=1)
    assert not (tmp_path / "o").exists()
    assert list(tmp_path.iterdir()) == []  # a failed run leaves nothing behind


def test_nifti_input_writes_no_dicom_seg(ball_pipeline, tmp_path):
    image, _ = ball_ct((40, 36, 30), (20, 18, 15), (10, 8, 7), np.random.default_rng(1))
    source = write_nifti(
        Volume(image, _affine((-2.0, -2.0, 2.0), (0, 0, 0))), tmp_path / "c.nii.gz"
    )
    out = tmp_path / "out"
    result = run_study(source, out, pipeline=ball_pipeline, device="cpu", output_options=EVERY)
    record = json.loads(result.run_json.read_text())
    assert record["input"]["kind"] == "nifti"
    assert "seg.dcm" not in record["outputs"]
    assert "meshes/ball.stl" in record["outputs"]


def test_zip_input_and_output_inside_input_refused(study, ball_pipeline, tmp_path):
    folder, _, _ = study
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (folder / "s2").iterdir():
            zf.write(path, f"series/{path.name}")
    result = run_study(
        archive, tmp_path / "zout", pipeline=ball_pipeline, device="cpu", output_options=EVERY
    )
    assert result.input_kind == "zip"
    assert (tmp_path / "zout" / "seg.dcm").is_file()
    with pytest.raises(InputError, match="contains the input"):
        run_study(folder, folder.parent, pipeline=ball_pipeline, overwrite=True)
    assert (folder / "s2").is_dir()


def _mesh_points(path: Path) -> np.ndarray:
    """Vertices of a binary STL (what Slicer reads; the header says SPACE=LPS)."""
    data = path.read_bytes()
    assert b"SPACE=LPS" in data[:80]
    count = int(np.frombuffer(data[80:84], "<u4")[0])
    records = np.frombuffer(
        data[84 : 84 + 50 * count], np.dtype([("t", "<f4", (12,)), ("a", "<u2")])
    )
    return records["t"][:, 3:].reshape(-1, 3).astype(np.float64)


def test_same_anatomy_as_ras_lps_and_permuted_input_gives_the_same_mesh(ball_pipeline, tmp_path):
    """The same voxels stored in RAS, LPS and permuted order (same patient positions)
    must give one surface in patient space, whatever order the file uses."""
    image, _ = ball_ct((44, 40, 32), (22, 19, 16), (11, 9, 8), np.random.default_rng(5))
    ras = _affine((2.0, 2.0, 2.0), (-40.0, -30.0, 20.0))
    # Reversed i and j: voxel (0, 0, k) is the old (43, 39, k), and i runs to the left.
    lps = ras @ np.array([[-1, 0, 0, 43], [0, -1, 0, 39], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    # Axes stored as (k, i, j): voxel (a, b, c) is the old (b, c, a).
    perm = ras @ np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    cases = {
        "ras": (image, ras),
        "lps": (image[::-1, ::-1, :], lps),
        "permuted": (np.transpose(image, (2, 0, 1)), perm),
    }
    bounds, maps = {}, {}
    for name, (array, affine) in cases.items():
        source = write_nifti(
            Volume(np.ascontiguousarray(array), affine), tmp_path / f"{name}.nii.gz"
        )
        out = tmp_path / name
        options = OutputOptions(outputs=("labels", "meshes"))
        run_study(source, out, pipeline=ball_pipeline, device="cpu", output_options=options)
        maps[name] = np.asarray(nib.load(out / "labels.nii.gz").dataobj)
        points = _mesh_points(out / "meshes" / "ball.stl")
        bounds[name] = np.concatenate([points.min(axis=0), points.max(axis=0)])
    # The label maps are the same voxels in each file's own order.
    np.testing.assert_array_equal(maps["lps"][::-1, ::-1, :], maps["ras"])
    np.testing.assert_array_equal(np.transpose(maps["permuted"], (1, 2, 0)), maps["ras"])
    assert maps["ras"].any()
    for name in ("lps", "permuted"):
        # Identical network input after orientation; only decimation, which depends on
        # vertex order, tells the files apart: well within a quarter voxel (0.5 mm).
        np.testing.assert_allclose(bounds[name], bounds["ras"], atol=0.5)
    # And they sit where the ball is in LPS: x and y negated from RAS.
    centre = ras[:3, :3] @ [22, 19, 16] + ras[:3, 3]
    mid = (bounds["ras"][:3] + bounds["ras"][3:]) / 2
    np.testing.assert_allclose(mid, centre * [-1, -1, 1], atol=2.0)


def test_bad_mesh_format_is_refused_before_any_work(study, tmp_path):
    with pytest.raises(InputError, match="mesh format 'fbx'"):
        run_study(
            study[0],
            tmp_path / "o",
            pipeline="no-such-pipeline",
            output_options=OutputOptions(mesh_format="fbx"),
        )
    assert list(tmp_path.iterdir()) == []


def test_output_folder_is_readable_by_others(full_run):
    _, out, _ = full_run
    assert out.stat().st_mode & 0o755 == 0o755
