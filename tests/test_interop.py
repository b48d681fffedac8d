"""Volume <-> nibabel / SimpleITK / MONAI MetaTensor: exact geometry, data and dtype."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medrecon.errors import FormatError, InputError
from medrecon.space import LPS_TO_RAS
from medrecon.volume import Volume, VolumeMeta

SHAPE = (5, 6, 7)


def _oblique() -> np.ndarray:
    """Rotations about two axes, anisotropic spacing, an offset: no axis is aligned."""
    a, b = np.deg2rad(25.0), np.deg2rad(-40.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.8, 1.25, 3.0])
    affine[:3, 3] = [-120.5, 33.25, 71.0]
    return affine


AFFINES = {
    "ras": np.array([[0.7, 0, 0, -90.0], [0, 0.9, 0, -110.5], [0, 0, 2.5, 40.0], [0, 0, 0, 1]]),
    "lps": LPS_TO_RAS
    @ np.array([[0.7, 0, 0, 120.0], [0, 0.9, 0, 95.5], [0, 0, 2.5, -40.0], [0, 0, 0, 1]]),
    "oblique": _oblique(),
}
DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.int64, np.float32, np.float64]


def _volume(affine: np.ndarray, dtype=np.int16, frames: int | None = None) -> Volume:
    shape = SHAPE if frames is None else (*SHAPE, frames)
    # Distinct values everywhere, so any axis mix-up shows as a data mismatch.
    array = (np.arange(np.prod(shape)) % 251).reshape(shape).astype(dtype)
    return Volume(array, affine, VolumeMeta(description="synthetic"))


def _assert_same(a: Volume, b: Volume) -> None:
    assert b.array.dtype == a.array.dtype
    assert b.shape == a.shape
    np.testing.assert_array_equal(b.array, a.array)
    np.testing.assert_allclose(b.affine, a.affine, rtol=0, atol=1e-6)


# -- nibabel ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nibabel_round_trip_in_memory(name, dtype):
    vol = _volume(AFFINES[name], dtype)
    img = vol.to_nibabel()
    assert int(img.header["sform_code"]) == 1
    assert int(img.header["qform_code"]) == 1
    assert img.header.get_xyzt_units() == ("mm", "unknown")
    np.testing.assert_allclose(img.header.get_sform(), vol.affine, atol=1e-6)
    np.testing.assert_allclose(img.header.get_qform(), vol.affine, atol=1e-6)
    _assert_same(vol, Volume.from_nibabel(img))


@pytest.mark.parametrize("name", AFFINES)
def test_nibabel_round_trip_through_file(tmp_path, name):
    vol = _volume(AFFINES[name], np.int16)
    path = tmp_path / "v.nii.gz"
    nib.save(vol.to_nibabel(), path)
    back = Volume.from_nibabel(nib.load(path))
    _assert_same(vol, back)
    # qform (rotation + zooms + offset) must describe the same grid as the sform.
    img = nib.load(path)
    np.testing.assert_allclose(img.header.get_qform(), img.header.get_sform(), atol=1e-5)


def test_nibabel_4d_frame_interval():
    vol = _volume(AFFINES["oblique"], np.float32, frames=3)
    vol.meta.extra["frame_interval_s"] = 2.5
    img = vol.to_nibabel()
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert img.header["pixdim"][4] == pytest.approx(2.5)
    back = Volume.from_nibabel(img)
    _assert_same(vol, back)
    assert back.meta.extra["frame_interval_s"] == pytest.approx(2.5)
    assert back.meta.frame_axis == "time"


def test_nibabel_bool_written_as_uint8():
    vol = Volume(np.eye(4, dtype=bool)[:, :, None].repeat(2, axis=2), np.eye(4))
    back = Volume.from_nibabel(vol.to_nibabel())
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, vol.array)


def _write_scaled_nifti(path, raw: np.ndarray, slope: float, inter: float) -> None:
    """A NIfTI file whose header sets scl_slope/inter (nibabel's writer would reset them)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(raw.shape)
    hdr.set_data_dtype(raw.dtype)
    hdr.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    hdr["scl_slope"] = slope
    hdr["scl_inter"] = inter
    hdr.set_data_offset(352)
    with open(path, "wb") as f:
        hdr.write_to(f)
        f.write(b"\0" * (352 - f.tell()))
        f.write(raw.tobytes(order="F"))


@pytest.mark.parametrize(
    ("slope", "inter", "dtype"),
    [(2.0, -1024.0, np.int16), (0.5, 3.0, np.float32), (1000.0, 0.0, np.float32)],
)
def test_nibabel_scaling_applied(tmp_path, slope, inter, dtype):
    raw = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    path = tmp_path / "scaled.nii"
    _write_scaled_nifti(path, raw, slope, inter)
    vol = Volume.from_nibabel(nib.load(path))
    assert vol.array.dtype == dtype
    np.testing.assert_array_equal(vol.array, (raw * slope + inter).astype(dtype))


def test_nibabel_trivial_scaling_keeps_dtype(tmp_path):
    raw = np.arange(60, dtype=np.uint16).reshape(3, 4, 5)
    path = tmp_path / "unit.nii"
    _write_scaled_nifti(path, raw, 1.0, 0.0)
    vol = Volume.from_nibabel(nib.load(path))
    assert vol.array.dtype == np.uint16
    np.testing.assert_array_equal(vol.array, raw)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 5, 6)])
def test_nibabel_wrong_dimensions_rejected(shape):
    img = nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4))
    with pytest.raises(FormatError, match="dimensions"):
        Volume.from_nibabel(img)


def test_nibabel_trailing_singleton_axes_dropped():
    img = nib.Nifti1Image(np.ones((2, 3, 4, 1, 1), np.float32), np.eye(4))
    assert Volume.from_nibabel(img).shape == (2, 3, 4, 1)


# -- SimpleITK ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sitk_round_trip(name, dtype):
    vol = _volume(AFFINES[name], dtype)
    img = vol.to_sitk()
    assert img.GetSize() == SHAPE
    _assert_same(vol, Volume.from_sitk(img))


@pytest.mark.parametrize("name", AFFINES)
def test_sitk_geometry_is_lps(name):
    vol = _volume(AFFINES[name])
    img = vol.to_sitk()
    lps = vol.lps_affine
    np.testing.assert_allclose(img.GetOrigin(), lps[:3, 3], atol=1e-9)
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-9)
    direction = np.reshape(img.GetDirection(), (3, 3))
    np.testing.assert_allclose(direction, LPS_TO_RAS[:3, :3] @ vol.direction, atol=1e-9)


@pytest.mark.parametrize("name", AFFINES)
def test_world_position_agrees_everywhere(name):
    """A voxel lands at the same patient position in medrecon, SimpleITK and nibabel."""
    vol = _volume(AFFINES[name])
    img_sitk = vol.to_sitk()
    img_nib = vol.to_nibabel()
    for ijk in [(0, 0, 0), (4, 0, 0), (1, 5, 2), (4, 5, 6)]:
        ras = vol.voxel_to_ras(ijk)[0]
        lps = np.asarray(img_sitk.TransformIndexToPhysicalPoint(ijk))
        np.testing.assert_allclose(lps * [-1, -1, 1], ras, atol=1e-9)
        np.testing.assert_allclose(nib.affines.apply_affine(img_nib.affine, ijk), ras, atol=1e-9)
        # Same voxel, same value: SimpleITK indexes (x, y, z) = (i, j, k).
        assert img_sitk[ijk] == vol.array[ijk]
        assert np.asanyarray(img_nib.dataobj)[ijk] == vol.array[ijk]
        back = np.asarray(img_sitk.TransformPhysicalPointToContinuousIndex(lps.tolist()))
        np.testing.assert_allclose(back, ijk, atol=1e-9)


def test_sitk_4d_round_trip():
    vol = _volume(AFFINES["oblique"], np.float32, frames=3)
    vol.meta.extra["frame_interval_s"] = 1.5
    img = vol.to_sitk()
    assert img.GetDimension() == 4
    assert img.GetSize() == (*SHAPE, 3)
    assert img.GetSpacing()[3] == pytest.approx(1.5)
    back = Volume.from_sitk(img)
    _assert_same(vol, back)
    assert back.meta.extra["frame_interval_s"] == pytest.approx(1.5)


def test_sitk_vector_image_gives_4d_volume():
    comps = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(4, 3, 2, 3)  # (k, j, i, c)
    img = sitk.GetImageFromArray(comps, isVector=True)
    vol = Volume.from_sitk(img)
    assert vol.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(vol.array[1, 2, 3], comps[3, 2, 1])


def test_sitk_2d_rejected():
    with pytest.raises(FormatError, match="2D"):
        Volume.from_sitk(sitk.Image(4, 5, sitk.sitkInt16))


# -- MONAI MetaTensor ---------------------------------------------------------------------
@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_metatensor_round_trip(name, dtype):
    import torch
    from monai.utils import SpaceKeys

    vol = _volume(AFFINES[name], dtype)
    tensor = vol.to_metatensor()
    assert tuple(tensor.shape) == (1, *SHAPE)
    assert tensor.affine.dtype == torch.float64
    assert tensor.meta["space"] == SpaceKeys.RAS
    assert tensor.meta["original_channel_dim"] == "no_channel"
    np.testing.assert_allclose(tensor.affine.numpy(), vol.affine, atol=0)
    _assert_same(vol, Volume.from_metatensor(tensor))


def test_metatensor_4d_channels_are_frames():
    vol = _volume(AFFINES["lps"], np.float32, frames=4)
    tensor = vol.to_metatensor()
    assert tuple(tensor.shape) == (4, *SHAPE)
    np.testing.assert_array_equal(tensor[2].numpy(), vol.array[..., 2])
    _assert_same(vol, Volume.from_metatensor(tensor))


def test_metatensor_in_lps_space_converted_to_ras():
    import torch
    from monai.data import MetaTensor
    from monai.utils import SpaceKeys

    vol = _volume(AFFINES["oblique"])
    tensor = MetaTensor(
        torch.from_numpy(vol.array)[None],
        affine=torch.as_tensor(vol.lps_affine),
        meta={"space": SpaceKeys.LPS},
    )
    _assert_same(vol, Volume.from_metatensor(tensor))


def test_metatensor_survives_monai_orientation():
    """MONAI's own Orientation transform moves data and affine consistently with ours."""
    from monai.transforms import Orientation

    vol = _volume(AFFINES["lps"])
    ras = Volume.from_metatensor(Orientation(axcodes="RAS", labels=None)(vol.to_metatensor()))
    assert ras.orientation_codes() == ("R", "A", "S")
    for ijk in [(0, 0, 0), (1, 2, 3)]:
        world = vol.voxel_to_ras(ijk)
        new_ijk = tuple(np.rint(ras.ras_to_voxel(world)[0]).astype(int))
        assert ras.array[new_ijk] == vol.array[ijk]


def test_metatensor_plain_tensor_rejected():
    import torch

    with pytest.raises(InputError, match="MetaTensor"):
        Volume.from_metatensor(torch.zeros(1, 2, 3, 4))


def test_volume_methods_delegate():
    vol = _volume(AFFINES["oblique"])
    _assert_same(vol, Volume.from_nibabel(vol.to_nibabel()))
    _assert_same(vol, Volume.from_sitk(vol.to_sitk()))
    _assert_same(vol, Volume.from_metatensor(vol.to_metatensor()))
