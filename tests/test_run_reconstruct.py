"""``medrecon run --reconstruct``: a thick stack is reconstructed, then segmented on that grid.

The network is the small UNet trained in this session (``ball_pipeline``); the stack
is the ball CT averaged into 6 mm box slices (NIfTI, and as a DICOM series for the
SEG). The reconstruction uses the interpolation baselines: the network is not the
point here (tests/test_cli_reconstruct.py runs it).
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pipeline_helpers import ball_ct

from medrecon.cli.main import build_parser, main
from medrecon.cli.reconstruct_options import reconstruct_options
from medrecon.errors import InputError
from medrecon.io.nifti import write_nifti
from medrecon.study.output_options import OutputOptions
from medrecon.study.reconstruction import ReconstructOptions
from medrecon.study.runner import is_complete, run_study
from medrecon.superres import SliceProfile
from medrecon.superres.degrade import simulate_stack
from medrecon.testing.dicom_series import write_ct_series
from medrecon.volume import Volume


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> dict[str, Path]:
    """``fine``: the ball CT at 2 mm isotropic; ``thick``: 6 mm box slices of it
    (NIfTI); ``dicom``: the same thick stack as a CT series."""
    root = tmp_path_factory.mktemp("stacks")
    image, _ = ball_ct((48, 40, 36), (24, 20, 18), (12, 10, 9), np.random.default_rng(7))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-50.0, -40.0, 10.0)
    fine = Volume(image.astype(np.float32), affine)
    thick = simulate_stack(fine, 2, SliceProfile("box", 6.0, 6.0))
    array = np.round(thick.array).astype(np.int16)
    write_nifti(Volume(image, affine), root / "fine.nii.gz")
    write_nifti(Volume(array, thick.affine), root / "thick.nii.gz")
    write_ct_series(array, thick.affine, root / "dicom", series_number=3)
    return {"fine": root / "fine.nii.gz", "thick": root / "thick.nii.gz", "dicom": root / "dicom"}


@pytest.fixture(scope="module")
def cli_run(stacks, ball_pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "out"
    args = ["run", str(stacks["thick"]), "-o", str(out), "--pipeline", str(ball_pipeline)]
    args += ["--device", "cpu", "--no-progress", "--outputs", "image,labels,scene,stats"]
    assert main([*args, "--reconstruct", "--reconstruct-method", "bspline"]) == 0
    return out


def _grid(path: Path):
    img = nib.load(path)
    return img.shape, img.affine


def test_outputs_on_the_reconstruction_grid(cli_run, stacks):
    record = json.loads((cli_run / "run.json").read_text())
    rec = record["reconstruction"]
    assert rec["method"] == "bspline" and rec["file"] == "reconstruction.json"
    (entry,) = rec["stacks"]
    assert entry["factor"] == 3.0 and entry["slice_profile"]["spacing_mm"] == 6.0
    assert entry["input"] == str(stacks["thick"])
    assert rec["output"]["shape"] == [48, 40, 31] and rec["output"]["spacing_mm"] == [2.0] * 3
    shape, affine = _grid(cli_run / "labels.nii.gz")
    assert list(shape) == rec["output"]["shape"]
    np.testing.assert_allclose(affine, rec["output"]["affine"], atol=1e-5)
    assert _grid(cli_run / "image.nii.gz")[0] == shape
    assert record["labels_found"] == ["ball"]
    # The input is described as read: the thick stack, not the reconstruction.
    assert record["input"]["shape"] == [48, 40, 11]
    sidecar = json.loads((cli_run / "reconstruction.json").read_text())
    assert sidecar["output"] == rec["output"]
    src_shape, src_affine = _grid(cli_run / "source.nii.gz")
    thick_shape, thick_affine = _grid(stacks["thick"])
    assert src_shape == thick_shape
    np.testing.assert_allclose(src_affine, thick_affine, atol=1e-5)
    assert {"reconstruction.json", "source.nii.gz", "run.json"} <= set(record["outputs"])
    assert "reconstruct" in record["timings_s"]
    assert is_complete(cli_run)


def test_scene_holds_the_source_stack(cli_run):
    root = ET.parse(cli_run / "scene.mrml").getroot()
    by_id = {node.get("id"): node for node in root}
    volumes = {}
    for node in root.iter("Volume"):
        refs = dict(p.split(":", 1) for p in node.get("references").split(";") if p)
        volumes[node.get("name")] = by_id[refs["storage"]].get("fileName")
    assert volumes == {"image": "image.nii.gz", "source": "source.nii.gz"}
    background = {n.get("backgroundVolumeID") for n in root.iter("SliceComposite")}
    assert len(background) == 1 and by_id[background.pop()].get("name") == "image"


def test_dicom_seg_frames_on_the_reconstruction_grid(stacks, ball_pipeline, tmp_path):
    out = tmp_path / "out"
    result = run_study(
        stacks["dicom"],
        out,
        pipeline=ball_pipeline,
        device="cpu",
        output_options=OutputOptions(outputs=("labels", "dicom_seg")),
        reconstruct=ReconstructOptions(method="linear"),
    )
    assert "seg.dcm" in result.outputs
    labels = nib.load(out / "labels.nii.gz")
    grid = np.asarray(labels.dataobj)
    to_voxel = np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0]) @ labels.affine)  # LPS -> ijk
    seg = pydicom.dcmread(out / "seg.dcm")
    source = pydicom.dcmread(next(stacks["dicom"].glob("*.dcm")))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness == 2.0
    frames = seg.pixel_array
    assert len(frames) == int((grid.reshape(-1, grid.shape[2]).max(axis=0) > 0).sum())
    for frame, group in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        # No frame claims to be derived from a source image: none shares its plane.
        assert not group.get("DerivationImageSequence")
        corner = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
        i, j, k = np.round(to_voxel @ [*corner, 1.0])[:3].astype(int)
        assert (i, j) == (0, 0)
        # Row r, column c of the frame is label voxel (c, r, k) of the reconstruction grid.
        np.testing.assert_array_equal(frame.T, grid[:, :, k] == 1)


def test_isotropic_stack_is_segmented_as_it_is(stacks, ball_pipeline, tmp_path):
    out = tmp_path / "out"
    result = run_study(
        stacks["fine"],
        out,
        pipeline=ball_pipeline,
        device="cpu",
        output_options=OutputOptions(outputs=("labels",)),
        reconstruct=True,
    )
    assert any("nothing to reconstruct" in w for w in result.warnings)
    record = json.loads((out / "run.json").read_text())
    assert "already isotropic" in record["reconstruction"]["skipped"]
    assert not (out / "reconstruction.json").exists()
    assert _grid(out / "labels.nii.gz")[0] == _grid(stacks["fine"])[0]


def test_reconstruct_options_are_checked_once():
    for bad in ({"method": "cubic"}, {"kind": "flat"}, {"thickness": -1.0}, {"finetune_steps": 0}):
        with pytest.raises(InputError):
            ReconstructOptions(**bad)
    assert ReconstructOptions(finetune=False, finetune_steps=0).finetune_steps == 0
    parser = build_parser("run")

    def parsed(*extra):
        return reconstruct_options(parser.parse_args(["run", "in", "-o", "out", *extra]))

    assert parsed() is None
    assert parsed("--reconstruct") == ReconstructOptions()
    # Any --reconstruct-* option implies --reconstruct.
    assert parsed("--reconstruct-no-pretrained", "--reconstruct-no-finetune") == (
        ReconstructOptions(weights=None, finetune=False)
    )
    with pytest.raises(InputError):
        parsed("--reconstruct-spacing", "0")
