"""The DICOM loader on real scanners' files (../shared/data/dicom).

Each output voxel must hold the DICOM pixel at the same patient position, and
shape/affine/data must agree with dcm2niix (its own tilt/spacing corrections).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

import medrecon
from medrecon.errors import DecodeError

RNG_SEED = 1234


@pytest.fixture(scope="module")
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"


def _canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), affine))
    return np.asanyarray(img.dataobj), img.affine


def _frames(ds: pydicom.Dataset):
    """(position, orientation, spacing, slope, intercept, pixels) of each frame of a file."""
    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        yield (
            ds.ImagePositionPatient,
            ds.ImageOrientationPatient,
            ds.PixelSpacing,
            float(ds.get("RescaleSlope", 1) or 1),
            float(ds.get("RescaleIntercept", 0) or 0),
            pixels,
        )
        return
    shared = ds.SharedFunctionalGroupsSequence[0]
    for i, pf in enumerate(ds.PerFrameFunctionalGroupsSequence):

        def get(seq, attr, pf=pf):
            for grp in (pf, shared):
                if seq in grp and attr in grp[seq][0]:
                    return grp[seq][0][attr].value
            return None

        yield (
            get("PlanePositionSequence", "ImagePositionPatient"),
            get("PlaneOrientationSequence", "ImageOrientationPatient"),
            get("PixelMeasuresSequence", "PixelSpacing"),
            float(get("PixelValueTransformationSequence", "RescaleSlope") or 1),
            float(get("PixelValueTransformationSequence", "RescaleIntercept") or 0),
            pixels[i],
        )


def _sample_against_dicom(volumes, files, n=400, exact=True):
    """Compare DICOM pixels at random positions with the volume there.

    Returns absolute differences. ``exact``: voxel indices must be integers.
    """
    rng = np.random.default_rng(RNG_SEED)
    diffs = []
    for path in files:
        ds = pydicom.dcmread(path)
        for ipp, iop, spacing, slope, intercept, pixels in _frames(ds):
            iop = np.asarray(iop, float)
            rows, cols = pixels.shape
            r = rng.integers(0, rows, n // max(1, len(files)) + 1)
            c = rng.integers(0, cols, r.size)
            lps = (
                np.asarray(ipp, float)
                + np.outer(c * float(spacing[1]), iop[:3])
                + np.outer(r * float(spacing[0]), iop[3:])
            )
            ras = lps * np.array([-1.0, -1.0, 1.0])
            expected = pixels[r, c].astype(np.float64) * slope + intercept
            # The frame belongs to whichever volume holds that value (4D/echo splits).
            best = None
            for vol in volumes:
                ijk = vol.ras_to_voxel(ras)
                data = vol.array if vol.array.ndim == 3 else None
                frames = [data] if data is not None else np.moveaxis(vol.array, -1, 0)
                for frame in frames:
                    if exact:
                        idx = np.rint(ijk).astype(int)
                        assert np.abs(ijk - idx).max() < 1e-3, f"{path}: not on a voxel centre"
                        inside = np.all((idx >= 0) & (idx < frame.shape), axis=1)
                        assert inside.all(), f"{path}: pixel outside the volume"
                        got = frame[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.float64)
                    else:
                        got = ndimage.map_coordinates(
                            frame.astype(np.float32), ijk.T, order=1, mode="nearest"
                        )
                    d = np.abs(got - expected)
                    if best is None or d.mean() < best.mean():
                        best = d
            diffs.append(best)
    return np.concatenate(diffs)


def _dicom_files(folder: Path) -> list[Path]:
    out = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except Exception:
                continue
            if "PixelData" in ds or "Rows" in ds:
                out.append(f)
    return out


# -- exact series: every sampled pixel lands on a voxel with the same value ------------------
@pytest.mark.parametrize(
    "folder",
    [
        "ct-philips-axial",
        "enhanced-multiframe/in/Philips",
        "enhanced-multiframe/in/Siemens/XA10",
    ],
)
def test_pixels_land_on_voxels_exactly(dicom_dir, folder):
    path = dicom_dir / folder
    # Compared with RescaleSlope/Intercept values: Philips MR loaded with its display values
    # (precise scaling is checked against dcm2niix in test_dicom_vendor.py).
    volumes = medrecon.load_all(path, philips_scaling="display")
    diffs = _sample_against_dicom(volumes, _dicom_files(path), exact=True)
    assert diffs.size > 100
    # Float32 storage of rescaled values is the only rounding allowed.
    assert diffs.max() <= 1e-3 * max(1.0, float(np.abs(volumes[0].array).max()))


@pytest.mark.parametrize("folder", ["ct-philips-tilt", "ct-ge-tilt-uneven"])
def test_resampled_series_within_interpolation_tolerance(dicom_dir, folder):
    path = dicom_dir / folder
    volume = medrecon.load(path)
    assert volume.meta.gantry_tilt_deg == pytest.approx(18.5, abs=0.05)
    assert any("gantry tilt" in w for w in volume.meta.warnings)
    # Axes are orthogonal after tilt correction.
    m = volume.affine[:3, :3] / np.asarray(volume.spacing)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-9)
    diffs = _sample_against_dicom([volume], _dicom_files(path), exact=False)
    # Linear interpolation blurs edges (bone/air differ by ~2000 HU); the bulk must agree.
    assert np.median(diffs) <= 2.0
    assert np.percentile(diffs, 90) <= 40.0


def test_uneven_spacing_is_reported_and_can_be_refused(dicom_dir):
    path = dicom_dir / "ct-ge-tilt-uneven"
    volume = medrecon.load(path)
    assert any("uneven slice spacing" in w for w in volume.meta.warnings)
    with pytest.raises(medrecon.errors.UnevenSpacingError, match="uneven"):
        medrecon.load(path, uneven="error")
    with pytest.raises(medrecon.DicomError, match="gantry tilt"):
        medrecon.load(dicom_dir / "ct-philips-tilt", tilt="error")


# -- against dcm2niix ------------------------------------------------------------------------
def _compare_with_reference(volume, ref_path: Path, exact: bool = True):
    ref = nib.load(ref_path)
    ref_data, ref_aff = _canonical(ref.get_fdata(dtype=np.float32), ref.affine)
    data, aff = _canonical(np.asarray(volume.array, dtype=np.float32), volume.affine)
    assert data.shape == ref_data.shape, ref_path.name
    np.testing.assert_allclose(aff, ref_aff, atol=1e-3, err_msg=ref_path.name)
    if exact:
        np.testing.assert_allclose(data, ref_data, rtol=1e-5, atol=1e-2, err_msg=ref_path.name)
    else:
        diff = np.abs(data - ref_data)
        assert np.corrcoef(data.ravel(), ref_data.ravel())[0, 1] > 0.9999
        assert np.median(diff) == 0.0
        assert diff.mean() < 1.0


def test_mosaic_orientations_match_dcm2niix(dicom_dir):
    refs = dicom_dir / "mr-orientation" / "dcm2niix-ref"
    checked = 0
    for folder in sorted((dicom_dir / "mr-orientation" / "in").glob("*/*")):
        for volume in medrecon.load_all(folder):
            matches = sorted(refs.glob(f"*_{volume.meta.series_number}.nii"))
            assert matches, f"no reference for series {volume.meta.series_number}"
            assert volume.meta.frame_axis is not None  # 2 volumes at the same positions
            _compare_with_reference(volume, matches[0])
            checked += 1
    assert checked == 19


def test_all_transfer_syntaxes_decode_identically(dicom_dir):
    folder = dicom_dir / "transfer-syntaxes" / "in"
    volumes = [medrecon.load(folder / f"{i}.dcm") for i in range(1, 10)]
    syntaxes = {v.meta.extra["transfer_syntaxes"][0] for v in volumes}
    assert len(syntaxes) >= 7  # explicit/implicit/big endian, RLE, JPEG lossless, JPEG-LS, J2K
    for v in volumes[1:]:
        np.testing.assert_array_equal(v.array, volumes[0].array)
        np.testing.assert_allclose(v.affine, volumes[0].affine)
    _compare_with_reference(volumes[0], dicom_dir / "transfer-syntaxes" / "dcm2niix-ref" / "1.nii")
    # All nine in one folder: the same image stored nine times becomes one volume.
    together = medrecon.load(folder)
    np.testing.assert_array_equal(together.array, volumes[0].array)
    assert any("repeated frame" in w for w in together.meta.warnings)


def test_enhanced_multiframe_matches_dcm2niix(dicom_dir):
    refs = dicom_dir / "enhanced-multiframe" / "dcm2niix-ref"
    philips = medrecon.load_all(dicom_dir / "enhanced-multiframe" / "in" / "Philips")
    assert len(philips) == 2
    by_type = {v.meta.distinguishing["image_type"]: v for v in philips}
    assert set(by_type) == {"T1_M", "T1_FIELD_MAP"}
    # Philips precise floating-point scaling (the default), as dcm2niix: equal values.
    _compare_with_reference(by_type["T1_M"], refs / "Philips_WIP_B0_NS_801_e1.nii")
    _compare_with_reference(
        by_type["T1_FIELD_MAP"], refs / "Philips_WIP_B0_NS_801_e2_fieldmaphz.nii"
    )
    assert by_type["T1_FIELD_MAP"].array.dtype == np.float32  # slope 0.2442: float
    siemens = medrecon.load(dicom_dir / "enhanced-multiframe" / "in" / "Siemens" / "XA10")
    assert siemens.shape == (64, 64, 6, 4)
    assert siemens.meta.frame_axis == "time"
    _compare_with_reference(siemens, refs / "Siemens_REST1_w_SMS_PF7-8_6.nii")


@pytest.fixture(scope="module")
def dcm2niix_refs(dicom_dir, tmp_path_factory) -> Path:
    beside = Path(sys.executable).parent / "dcm2niix"  # venv not on PATH
    exe = shutil.which("dcm2niix") or (str(beside) if beside.exists() else None)
    if exe is None:
        pytest.skip("dcm2niix (PyPI package 'dcm2niix') is not installed")
    out = tmp_path_factory.mktemp("dcm2niix")
    for name in ("ct-philips-axial", "ct-philips-tilt", "ct-ge-tilt-uneven"):
        (out / name).mkdir()
        subprocess.run(
            [exe, "-z", "n", "-f", "%s", "-o", str(out / name), str(dicom_dir / name)],
            check=True,
            capture_output=True,
        )
    return out


@pytest.mark.parametrize(
    ("folder", "pattern", "exact"),
    [
        ("ct-philips-axial", "*.nii", True),
        ("ct-philips-tilt", "*_Tilt_*.nii", False),
        ("ct-ge-tilt-uneven", "*_Tilt_Eq_*.nii", False),
    ],
)
def test_ct_matches_dcm2niix_corrections(dicom_dir, dcm2niix_refs, folder, pattern, exact):
    refs = sorted((dcm2niix_refs / folder).glob(pattern))
    assert refs, f"dcm2niix wrote no {pattern} for {folder}"
    _compare_with_reference(medrecon.load(dicom_dir / folder), refs[0], exact=exact)


def test_undecodable_syntax_names_it_and_the_package(dicom_dir, tmp_path):
    ds = pydicom.dcmread(dicom_dir / "transfer-syntaxes" / "in" / "5.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder here
    ds.save_as(tmp_path / "mpeg.dcm")
    with pytest.raises(DecodeError, match=r"MPEG2.*install"):
        medrecon.load(tmp_path / "mpeg.dcm")
