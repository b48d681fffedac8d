"""``medrecon reconstruct`` end to end, in-process, on a thick stack simulated from real CT.

The stack is a small crop of the shared abdominal CT (3 mm) averaged into 9 mm box
slices; most tests use the B-spline baseline (the network is not the point here),
one runs the network from scratch with a two-step fine-tune.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import nibabel as nib
import numpy as np
import pytest

from medrecon.cli.main import main
from medrecon.io.nifti import write_nifti
from medrecon.superres import SliceProfile
from medrecon.superres.degrade import simulate_stack
from medrecon.superres.grid import isotropic_grid
from medrecon.volume import Volume


@pytest.fixture(scope="module")
def stacks(shared_data, tmp_path_factory) -> dict[str, Path]:
    """``ref``: a 40x40x30 crop at 3 mm; ``thick``: it as 9 mm box slices (NIfTI)."""
    from medrecon.io import load

    root = tmp_path_factory.mktemp("stacks")
    ct = load(shared_data / "ct-abdomen" / "ct.nii.gz")
    crop = Volume(ct.array[30:70, 30:70, 40:70].copy(), ct.affine.copy(), ct.meta.copy())
    write_nifti(crop, root / "ref.nii.gz")
    write_nifti(simulate_stack(crop, 2, SliceProfile("box", 9.0, 9.0)), root / "thick.nii.gz")
    return {"ref": root / "ref.nii.gz", "thick": root / "thick.nii.gz"}


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())


def test_bspline_default_grid_sidecar_and_gaps(stacks, tmp_path, capsys):
    out = tmp_path / "out" / "recon.nii.gz"
    args = ["reconstruct", str(stacks["thick"]), "-o", str(out), "--method", "bspline"]
    assert main([*args, "--thickness", "6"]) == 0
    printed = capsys.readouterr().out
    from medrecon.io import load

    expected = isotropic_grid([load(stacks["thick"])])
    img = nib.load(out)
    assert img.shape == expected.shape == (40, 40, 25)
    np.testing.assert_allclose(img.affine, expected.affine, atol=1e-4)
    side = _sidecar(out)
    assert side["method"] == "bspline"
    assert side["output"]["shape"] == [40, 40, 25]
    assert side["output"]["spacing_mm"] == [3.0, 3.0, 3.0]
    (entry,) = side["stacks"]
    assert entry["input"] == str(stacks["thick"])
    assert entry["factor"] == 3.0 and entry["thick_axis"] == 2
    assert entry["slice_profile"]["kind"] == "box"
    assert entry["slice_profile"]["thickness_mm"] == 6.0
    assert entry["slice_profile"]["relation"] == "gapped"
    assert any("3 mm gaps" in w for w in side["warnings"])  # the gap is named
    assert "factor 3.0x" in printed and "gapped" in printed and "warning:" in printed


def test_network_like_reference_grid(stacks, tmp_path, capsys):
    out = tmp_path / "like.nii.gz"
    args = ["reconstruct", str(stacks["thick"]), "-o", str(out), "--like", str(stacks["ref"])]
    assert main([*args, "--no-pretrained", "--finetune-steps", "2", "--device", "cpu"]) == 0
    ref, img = nib.load(stacks["ref"]), nib.load(out)
    assert img.shape == ref.shape
    np.testing.assert_array_equal(img.affine, ref.affine)
    side = _sidecar(out)
    assert side["method"] == "network"
    (entry,) = side["stacks"]
    assert entry["weights"] == "untrained"
    assert entry["finetune"]["steps"] == 2 and entry["finetune"]["last_loss"] > 0
    assert side["output"]["like"] == "ref.nii.gz"
    assert "fine-tune 2 steps" in capsys.readouterr().out


def test_scene_folder_holds_stack_and_result(stacks, tmp_path):
    out, scene_dir = tmp_path / "r.nii.gz", tmp_path / "scene"
    args = ["reconstruct", str(stacks["thick"]), "-o", str(out), "--method", "linear"]
    assert main([*args, "--scene", str(scene_dir)]) == 0
    root = ET.parse(scene_dir / "scene.mrml").getroot()
    by_id = {node.get("id"): node for node in root}
    volumes = {n.get("name"): n for n in root.iter("Volume")}
    assert set(volumes) == {"reconstruction", "stack-1 thick"}
    files = {}
    for name, node in volumes.items():
        refs = dict(p.split(":", 1) for p in node.get("references").split(";") if p)
        file_name = by_id[refs["storage"]].get("fileName")
        assert not Path(file_name).is_absolute()
        files[name] = scene_dir / file_name
    assert files["reconstruction"].name == "reconstruction.nii.gz"
    np.testing.assert_allclose(nib.load(files["reconstruction"]).affine, nib.load(out).affine)
    np.testing.assert_allclose(
        nib.load(files["stack-1 thick"]).affine, nib.load(stacks["thick"]).affine, atol=1e-5
    )
    background = {n.get("backgroundVolumeID") for n in root.iter("SliceComposite")}
    assert background == {volumes["reconstruction"].get("id")}
    # A second run into the same scene folder needs --overwrite, and then replaces it.
    assert main([*args, "--scene", str(scene_dir), "--overwrite"]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main([*args, "--scene", str(tmp_path / "mine"), "--overwrite"]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_isotropic_stack_is_refused(stacks, tmp_path, capsys):
    out = tmp_path / "iso.nii.gz"
    assert main(["reconstruct", str(stacks["ref"]), "-o", str(out), "--method", "bspline"]) == 2
    assert "nothing to reconstruct" in capsys.readouterr().err
    assert not out.exists()


def test_existing_output_and_input_as_output(stacks, tmp_path, capsys):
    out = tmp_path / "o.nii.gz"
    args = ["reconstruct", str(stacks["thick"]), "--method", "bspline", "-o"]
    assert main([*args, str(out)]) == 0
    before = out.read_bytes()
    assert main([*args, str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, str(out), "--overwrite"]) == 0
    thick = stacks["thick"].read_bytes()
    assert main([*args, str(stacks["thick"]), "--overwrite"]) == 2
    assert "input" in capsys.readouterr().err
    assert stacks["thick"].read_bytes() == thick


def test_4d_series_and_series_count(tmp_path, capsys):
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    data = np.random.default_rng(0).normal(size=(12, 12, 5, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "dyn.nii.gz")
    out = str(tmp_path / "o.nii.gz")
    assert main(["reconstruct", str(tmp_path / "dyn.nii.gz"), "-o", out]) == 2
    assert "4D" in capsys.readouterr().err
    two = [str(tmp_path / "dyn.nii.gz")] * 2
    assert main(["reconstruct", *two, "-o", out, *["--series", "1"] * 3]) == 2
    assert "3 --series for 2 stacks" in capsys.readouterr().err
