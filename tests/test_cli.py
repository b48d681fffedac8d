"""The ``info`` and ``convert`` commands, run in-process on the committed sample study."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medrecon
from medrecon.cli.main import main

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct-abdomen"


def test_info_table_and_json(capsys):
    assert main(["info", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "112 file(s), 1 volume(s)" in out
    assert "122x101x112" in out and "CT" in out
    assert main(["info", "--json", str(SAMPLE)]) == 0
    report = json.loads(capsys.readouterr().out)
    (series,) = report["series"]
    assert series["shape"] == [122, 101, 112]
    assert series["spacing"] == [3.0, 3.0, 3.0]
    assert report["skipped"] == []


def test_info_lists_skipped_files(tmp_path, capsys):
    for f in sorted(SAMPLE.glob("*.dcm"))[:3]:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 x not a DICOM file" in out and "notes.txt" in out


def test_convert_writes_nifti_and_sidecar(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(SAMPLE), "-o", str(out)]) == 0
    (nifti,) = sorted(out.glob("*.nii.gz"))
    assert nifti.name == "1_CT_axial_3_mm.nii.gz"
    img = nib.load(nifti)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.get_sform(), img.get_qform(), atol=1e-5)
    volume = medrecon.load(SAMPLE)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), volume.array)
    np.testing.assert_allclose(img.affine, volume.affine, atol=1e-4)
    sidecar = json.loads(nifti.with_name("1_CT_axial_3_mm.json").read_text())
    assert sidecar["Modality"] == "CT" and sidecar["SeriesNumber"] == 1
    assert sidecar["SeriesInstanceUID"] == volume.meta.series_uid
    assert sidecar["VoxelSpacingMM"] == [3.0, 3.0, 3.0]
    assert sidecar["Warnings"] == []
    # A second run refuses to overwrite, and leaves the first output as it was.
    before = nifti.read_bytes()
    assert main(["convert", str(SAMPLE), "-o", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert nifti.read_bytes() == before
    assert main(["convert", str(SAMPLE), "-o", str(out), "--overwrite"]) == 0


def test_convert_names_are_sanitised(tmp_path):
    from medrecon.io.convert import output_stem

    volume = medrecon.load(SAMPLE)
    volume.meta.description = "../../etc/passwd\x00 <bad>|name"
    volume.meta.series_number = 7
    stem = output_stem(volume)
    assert "/" not in stem and ".." not in stem and "\x00" not in stem
    assert stem.startswith("7_")


def test_bad_input_gives_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["convert", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    assert "no files found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("module", ["info", "convert"])
def test_commands_have_help(module, capsys):
    with pytest.raises(SystemExit) as exc:
        main([module, "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out
