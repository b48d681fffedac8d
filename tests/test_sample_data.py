"""The quick-start study sample_data/ct-abdomen/ and the writer that made it.

The committed DICOM series is checked voxel by voxel against the source NIfTI in
../shared/data (skipped when that folder is absent): for random pixels, the patient
position computed from the DICOM headers must land on a NIfTI voxel with the same HU,
both by hand from the headers and through SimpleITK's series reader.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = PROJECT_ROOT / "sample_data" / "ct-abdomen"
SHARED_CT = PROJECT_ROOT.parent / "shared" / "data" / "ct-abdomen" / "ct.nii.gz"
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
N_POINTS = 2000


def _read_series(folder: Path) -> list[pydicom.Dataset]:
    datasets = [pydicom.dcmread(path) for path in sorted(folder.glob("*.dcm"))]
    assert datasets, f"no DICOM files in {folder}"
    return datasets


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)


def _pixel_lps(ds: pydicom.Dataset, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """LPS position of pixels (row, column) from this file's header: shape (n, 3)."""
    ipp = np.array(ds.ImagePositionPatient, dtype=np.float64)
    iop = np.array(ds.ImageOrientationPatient, dtype=np.float64)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    return (
        ipp
        + cols[:, None] * col_spacing * iop[:3][None, :]
        + rows[:, None] * row_spacing * iop[3:][None, :]
    )


def _lps_to_nifti_index(lps: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest voxel index of LPS points in the NIfTI, and the largest distance to it."""
    ras = lps @ LPS_FROM_RAS.T  # the same diagonal maps both ways
    ijk = (np.linalg.inv(affine_ras) @ np.c_[ras, np.ones(len(ras))].T)[:3].T
    nearest = np.rint(ijk)
    return nearest.astype(int), float(np.max(np.abs(ijk - nearest)))


@pytest.fixture(scope="module")
def series() -> list[pydicom.Dataset]:
    return _read_series(SAMPLE_DIR)


@pytest.fixture(scope="module")
def nifti() -> nib.Nifti1Image:
    if not SHARED_CT.is_file():
        pytest.skip(f"shared test data absent: {SHARED_CT} (see ../shared/data/README.md)")
    return nib.load(SHARED_CT)


def test_sample_series_headers(series: list[pydicom.Dataset]) -> None:
    assert len(series) == 112
    first = series[0]
    assert (first.Rows, first.Columns) == (101, 122)
    assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    for name in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[name].value for ds in series}) == 1, name
    assert len({ds.SOPInstanceUID for ds in series}) == len(series)
    for ds in series:
        assert ds.SOPClassUID == CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "CT"
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert str(ds.PatientName) == "Anonymous^Sample"
    np.testing.assert_allclose(np.array(first.ImageOrientationPatient, float), [1, 0, 0, 0, 1, 0])
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in series])
    np.testing.assert_allclose(np.diff(z), 3.0, atol=1e-6)
    assert [ds.InstanceNumber for ds in series] == list(range(1, len(series) + 1))


def test_sample_series_matches_nifti(series: list[pydicom.Dataset], nifti: nib.Nifti1Image) -> None:
    data = np.asarray(nifti.dataobj)
    rng = np.random.default_rng(0)
    ks = rng.integers(0, len(series), N_POINTS)
    rows = rng.integers(0, series[0].Rows, N_POINTS)
    cols = rng.integers(0, series[0].Columns, N_POINTS)
    pixels = [_hu(ds) for ds in series]
    lps = np.concatenate(
        [_pixel_lps(series[k], rows[ks == k], cols[ks == k]) for k in range(len(series))]
    )
    dicom_hu = np.concatenate([pixels[k][rows[ks == k], cols[ks == k]] for k in range(len(series))])
    ijk, off_grid = _lps_to_nifti_index(lps, nifti.affine)
    assert off_grid < 1e-3
    assert np.all((ijk >= 0) & (ijk < np.array(data.shape)))
    np.testing.assert_array_equal(dicom_hu, data[ijk[:, 0], ijk[:, 1], ijk[:, 2]])
    # every voxel, not just the sample: the whole volume is held exactly
    assert sum(int(p.size) for p in pixels) == data.size
    np.testing.assert_array_equal(
        np.sort(np.concatenate([p.ravel() for p in pixels])), np.sort(data.ravel())
    )


def test_sample_series_through_simpleitk(nifti: nib.Nifti1Image) -> None:
    sitk = pytest.importorskip("SimpleITK")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(SAMPLE_DIR)))
    image = reader.Execute()
    assert image.GetSize() == (122, 101, 112)
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    data = np.asarray(nifti.dataobj)
    rng = np.random.default_rng(1)
    ijk = np.stack([rng.integers(0, n, N_POINTS) for n in data.shape], axis=1)
    ras = (nifti.affine @ np.c_[ijk, np.ones(N_POINTS)].T)[:3].T
    lps = ras @ LPS_FROM_RAS.T
    for (i, j, k), point in zip(ijk, lps, strict=True):
        continuous = np.array(image.TransformPhysicalPointToContinuousIndex(point.tolist()))
        x, y, z = np.rint(continuous).astype(int)
        assert np.max(np.abs(continuous - (x, y, z))) < 1e-3
        assert array[z, y, x] == data[i, j, k]


# --- the writer itself, on synthetic volumes with exact answers -------------------------


def _roundtrip_check(volume: np.ndarray, affine: np.ndarray, folder: Path) -> None:
    written = _read_series(folder)
    assert len(written) == volume.shape[2]
    for ds in written:
        hu = _hu(ds)
        rows, cols = np.indices(hu.shape).reshape(2, -1)
        ijk, off_grid = _lps_to_nifti_index(_pixel_lps(ds, rows, cols), affine)
        assert off_grid < 1e-4
        np.testing.assert_array_equal(hu[rows, cols], volume[ijk[:, 0], ijk[:, 1], ijk[:, 2]])


def _synthetic(shape: tuple[int, int, int]) -> np.ndarray:
    return (np.arange(np.prod(shape)).reshape(shape) % 3000 - 1000).astype(np.int32)


@pytest.mark.parametrize(
    "ras_axes",
    [
        np.diag([2.0, 1.5, 3.0]),  # RAS on disk: i and j are flipped on writing
        np.diag([-2.0, -1.5, -3.0]),  # LPS on disk, descending slices
        np.array([[0.0, 0.0, 2.5], [1.2, 0.0, 0.0], [0.0, -1.0, 0.0]]),  # permuted axes
    ],
)
def test_write_ct_series_keeps_positions(tmp_path: Path, ras_axes: np.ndarray) -> None:
    from medrecon.testing.dicom_series import write_ct_series

    volume = _synthetic((7, 5, 4))
    affine = np.eye(4)
    affine[:3, :3] = ras_axes
    affine[:3, 3] = [-10.25, 33.5, 7.125]
    paths = write_ct_series(volume, affine, tmp_path / "series")
    assert [p.name for p in paths] == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm", "IM0004.dcm"]
    _roundtrip_check(volume, affine, tmp_path / "series")


def test_write_ct_series_oblique(tmp_path: Path) -> None:
    from medrecon.testing.dicom_series import write_ct_series

    angle = np.deg2rad(20)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.75, 0.75, 2.0])
    volume = _synthetic((6, 8, 3))
    write_ct_series(volume, affine, tmp_path / "oblique")
    _roundtrip_check(volume, affine, tmp_path / "oblique")


def test_write_ct_series_is_deterministic_and_atomic(tmp_path: Path) -> None:
    from medrecon.testing.dicom_series import OutputExistsError, write_ct_series

    volume = _synthetic((4, 4, 3))
    first = write_ct_series(volume, np.eye(4), tmp_path / "a", uid_root="1.2.3.")
    second = write_ct_series(volume, np.eye(4), tmp_path / "b", uid_root="1.2.3.")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert pydicom.dcmread(first[0]).StudyInstanceUID.startswith("1.2.3.")
    third = write_ct_series(volume, np.eye(4), tmp_path / "c")
    assert pydicom.dcmread(third[0]).SOPInstanceUID.startswith("2.25.")
    assert (
        third[0].read_bytes() == write_ct_series(volume, np.eye(4), tmp_path / "d")[0].read_bytes()
    )

    with pytest.raises(OutputExistsError):
        write_ct_series(volume, np.eye(4), tmp_path / "a")
    write_ct_series(volume + 1, np.eye(4), tmp_path / "a", overwrite=True)
    _roundtrip_check(volume + 1, np.eye(4), tmp_path / "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "d"]


def test_write_ct_series_refuses_values_it_cannot_store(tmp_path: Path) -> None:
    from medrecon.errors import InputError
    from medrecon.testing.dicom_series import write_ct_series

    with pytest.raises(InputError, match="signed 16-bit"):
        write_ct_series(np.full((2, 2, 2), 40000), np.eye(4), tmp_path / "big")
    with pytest.raises(InputError, match="non-integer"):
        write_ct_series(np.full((2, 2, 2), 0.5), np.eye(4), tmp_path / "frac")
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(InputError, match="orthogonal"):
        write_ct_series(np.zeros((2, 2, 2)), sheared, tmp_path / "shear")
    assert not any(tmp_path.iterdir())
