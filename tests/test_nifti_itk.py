"""NIfTI / NRRD / MetaImage files: real data round trips, atomic writes, clear errors."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medrecon.atomic import atomic_write_json, atomic_write_path, atomic_write_text
from medrecon.errors import FormatError, InputError
from medrecon.io.itk import read_itk, write_itk
from medrecon.io.nifti import read_nifti, write_nifti
from medrecon.volume import Volume

REAL = [
    ("ct-abdomen/ct.nii.gz", np.int32, ("R", "A", "S")),
    ("mr-abdomen/mr.nii.gz", np.int16, ("L", "P", "S")),
]


def _assert_same(a: Volume, b: Volume) -> None:
    assert b.array.dtype == a.array.dtype
    np.testing.assert_array_equal(b.array, a.array)
    np.testing.assert_allclose(b.affine, a.affine, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("rel", "dtype", "codes"), REAL)
def test_real_nifti_reads_like_nibabel(shared_data, rel, dtype, codes):
    path = shared_data / rel
    vol = read_nifti(path)
    ref = nib.load(path)
    assert vol.array.dtype == dtype
    assert vol.orientation_codes() == codes
    np.testing.assert_array_equal(vol.affine, ref.affine)
    np.testing.assert_array_equal(vol.array, np.asanyarray(ref.dataobj))
    assert vol.meta.source_files == [str(path)]
    assert vol.meta.description == path.name.removesuffix(".nii.gz")


@pytest.mark.parametrize(("rel", "dtype", "codes"), REAL)
def test_real_nifti_written_back(shared_data, tmp_path, rel, dtype, codes):
    vol = read_nifti(shared_data / rel)
    out = write_nifti(vol, tmp_path / "out.nii.gz")
    hdr = nib.load(out).header
    assert int(hdr["sform_code"]) == 1
    assert int(hdr["qform_code"]) == 1
    np.testing.assert_allclose(hdr.get_qform(), hdr.get_sform(), atol=1e-5)
    assert hdr.get_data_dtype() == dtype
    _assert_same(vol, read_nifti(out))
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]  # no temp file left


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize(("rel", "dtype", "codes"), REAL)
def test_real_nifti_through_itk_formats(shared_data, tmp_path, rel, dtype, codes, suffix):
    vol = read_nifti(shared_data / rel)
    out = write_itk(vol, tmp_path / f"out{suffix}")
    back = read_itk(out)
    _assert_same(vol, back)
    assert back.orientation_codes() == codes
    assert back.meta.description == "out"
    # SimpleITK itself (LPS) puts voxel (i, j, k) where medrecon's RAS affine does.
    img = sitk.ReadImage(str(out))
    ijk = (3, 7, 5)
    lps = np.asarray(img.TransformIndexToPhysicalPoint(ijk))
    np.testing.assert_allclose(lps * [-1, -1, 1], vol.voxel_to_ras(ijk)[0], atol=1e-4)
    assert img[ijk] == vol.array[ijk]


def test_nrrd_header_says_lps(tmp_path):
    vol = Volume(np.zeros((2, 3, 4), np.uint8), np.diag([1.0, 2.0, 3.0, 1.0]))
    out = write_itk(vol, tmp_path / "x.nrrd", compress=False)
    header = out.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "space: left-posterior-superior" in header
    assert "space directions: (-1,0,0) (0,-2,0) (0,0,3)" in header


def test_4d_nifti_and_mha_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    vol = Volume(array, np.diag([-1.5, -1.5, 4.0, 1.0]))
    vol.meta.extra["frame_interval_s"] = 2.0
    back = read_nifti(write_nifti(vol, tmp_path / "t.nii"))
    _assert_same(vol, back)
    assert back.meta.extra["frame_interval_s"] == pytest.approx(2.0)
    _assert_same(vol, read_itk(write_itk(vol, tmp_path / "t.mha")))


def test_truncated_gzip_nifti_is_format_error(shared_data, tmp_path):
    data = (shared_data / "mr-abdomen/mr.nii.gz").read_bytes()
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"bad\.nii\.gz"):
        read_nifti(bad)


def test_synthetic_truncated_nifti_is_format_error(tmp_path):
    vol = Volume(np.arange(1000, dtype=np.int16).reshape(10, 10, 10), np.eye(4))
    good = write_nifti(vol, tmp_path / "good.nii.gz")
    raw = gzip.decompress(good.read_bytes())
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(gzip.compress(raw)[:-200])
    with pytest.raises(FormatError, match="corrupt"):
        read_nifti(bad)
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"not a nifti file at all" * 10)
    with pytest.raises(FormatError, match=r"junk\.nii"):
        read_nifti(junk)


def test_corrupt_itk_file_is_format_error(tmp_path):
    bad = tmp_path / "bad.nrrd"
    bad.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n")
    with pytest.raises(FormatError, match=r"bad\.nrrd"):
        read_itk(bad)


def test_missing_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_nifti(tmp_path / "nope.nii.gz")
    with pytest.raises(InputError, match="not found"):
        read_itk(tmp_path / "nope.nrrd")


def test_wrong_extensions_rejected(tmp_path):
    vol = Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    with pytest.raises(InputError, match=r"\.nii"):
        write_nifti(vol, tmp_path / "x.nrrd")
    with pytest.raises(FormatError, match=r"\.nrrd"):
        write_itk(vol, tmp_path / "x.mhd")  # detached header: not atomic-safe
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(FormatError):
        read_itk(tmp_path / "x.png")


# -- atomic outputs -----------------------------------------------------------------------
def test_atomic_path_keeps_suffixes_and_replaces(tmp_path):
    target = tmp_path / "labels.nii.gz"
    target.write_text("old")
    with atomic_write_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".labels.tmp-")
        assert tmp.name.endswith(".nii.gz")
        assert tmp.exists()
        tmp.write_text("new")
        assert target.read_text() == "old"  # untouched until success
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz"]


def test_atomic_path_cleans_up_on_error(tmp_path):
    target = tmp_path / "stats.json"
    target.write_text("old")

    def interrupted_write() -> None:
        with atomic_write_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        interrupted_write()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]


def test_atomic_write_text_and_json(tmp_path):
    text = atomic_write_text(tmp_path / "a.txt", "line1\r\nline2")
    assert text.read_bytes() == b"line1\r\nline2"
    obj = {"z": 1, "name": "Leber é 中", "vals": np.array([1, 2]), "n": np.int64(3)}
    path = atomic_write_json(tmp_path / "b.json", obj)
    written = path.read_text(encoding="utf-8")
    assert written.endswith("}\n")
    assert "Leber é 中" in written  # ensure_ascii=False
    assert written.startswith('{\n  "z": 1,')  # key order kept, indent 2
    assert json.loads(written) == {"z": 1, "name": "Leber é 中", "vals": [1, 2], "n": 3}
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "c.json", {"x": object()})
    assert not (tmp_path / "c.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
