"""medrecon's CSA2 reader against nibabel's on every real Siemens mosaic in
../shared/data: the same slice count and slice normal, and the same tiles."""

from __future__ import annotations

import struct
import warnings

import pydicom
import pytest

from medrecon.io.dicom.csa import (
    csa_image_header,
    mosaic_count,
    parse_csa2,
    slice_normal_vector,
)


def _mosaics(root):
    out = []
    for path in sorted((root / "dicom").rglob("*")):
        if not path.is_file() or path.suffix in (".json", ".nii", ".gz", ".txt", ".md"):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "MOSAIC" in [str(v).upper() for v in ds.get("ImageType", [])]:
            out.append(path)
    return out


def test_csa2_values_match_nibabel_on_every_real_mosaic(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader
    paths = _mosaics(shared_data)
    assert len(paths) >= 20
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ours = csa_image_header(ds)
        theirs = csareader.get_csa_header(ds, "image")
        assert ours is not None and theirs is not None, path
        assert mosaic_count(ours) == csareader.get_n_mosaic(theirs), path
        normal = csareader.get_slice_normal(theirs)
        assert slice_normal_vector(ours) == pytest.approx(tuple(normal), abs=0), path
        # Every tag nibabel reads, with the same non-empty items.
        for name, tag in theirs["tags"].items():
            want = [str(v).strip() for v in tag["items"] if str(v).strip()]
            got = ours[name]
            assert (
                [float(v) for v in got] == [float(v) for v in want]
                if (want and tag["vr"] in ("FD", "FL", "DS", "IS", "SL", "UL", "SS", "US"))
                else got == want
            ), (path, name)


def _blob(value: bytes, length: int) -> bytes:
    """A CSA2 header with one tag, NumberOfImagesInMosaic, of one item."""
    head = b"SV10\x04\x03\x02\x01" + struct.pack("<2I", 1, 77)
    tag = struct.pack("<64si4s3i", b"NumberOfImagesInMosaic", 1, b"IS\0\0", 6, 1, 77)
    item = struct.pack("<4i", length, length, 77, length) + value
    return head + tag + item + b"\0" * (-len(value) % 4)


def test_not_csa2_and_damaged_blobs():
    assert mosaic_count(parse_csa2(_blob(b"36", 2))) == 36
    assert mosaic_count(parse_csa2(_blob(b"36\0\0", 4))) == 36
    assert mosaic_count(parse_csa2(_blob(b"x", 1))) is None
    assert parse_csa2(struct.pack("<2I", 5, 0) + b"\0" * 80) is None  # CSA1: left to nibabel
    with pytest.raises(ValueError, match="past the end"):
        parse_csa2(_blob(b"36", 99))
    with pytest.raises(ValueError, match="tags"):
        parse_csa2(b"SV10\x04\x03\x02\x01" + struct.pack("<2I", 5000, 77))
