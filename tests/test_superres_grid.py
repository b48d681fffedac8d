"""Output grids (isotropic and like=), affine-honouring resampling, baselines and metrics."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medrecon.space import LPS_TO_RAS
from medrecon.superres import SliceProfile
from medrecon.superres.baselines import body_mask, interpolate, psnr, ssim
from medrecon.superres.degrade import simulate_stack
from medrecon.superres.grid import OutputGrid, isotropic_grid, like_grid, resample_to
from medrecon.volume import Volume


def _oblique(spacing, origin=(5.0, -3.0, 10.0)):
    a = np.deg2rad(30.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def _smooth(shape, wiggle=0.0):
    ii, jj, kk = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    out = np.cos(2 * ii) * np.sin(1.5 * jj + 0.3) + 0.5 * kk**2 + 0.3 * np.sin(wiggle * kk)
    return out.astype(np.float32)


def test_isotropic_grid_of_one_stack_keeps_its_in_plane_centres():
    stack = Volume(np.zeros((20, 22, 6), np.float32), _oblique((0.8, 0.8, 4.0)))
    grid = isotropic_grid([stack])
    assert grid.shape == (20, 22, 26)
    np.testing.assert_allclose(grid.spacing, 0.8)
    np.testing.assert_allclose(grid.affine[:3, :2], stack.affine[:3, :2], atol=1e-12)
    np.testing.assert_allclose(grid.affine[:3, 2] * 5, stack.affine[:3, 2], atol=1e-12)
    np.testing.assert_allclose(grid.affine[:3, 3], stack.affine[:3, 3], atol=1e-12)


def test_isotropic_grid_covers_every_stack_in_the_first_ones_orientation():
    first = Volume(np.zeros((10, 10, 4)), np.diag([1.0, 1.0, 3.0, 1.0]))
    lps = np.diag([0.5, 0.5, 2.0, 1.0])
    lps[:3, 3] = [-2.0, -3.0, 20.0]
    second = Volume(np.zeros((8, 8, 3)), LPS_TO_RAS @ lps)
    grid = isotropic_grid([first, second], spacing=None)
    np.testing.assert_allclose(grid.spacing, 0.5)
    lo = grid.affine[:3, 3]
    hi = lo + (np.asarray(grid.shape) - 1) * 0.5
    for v in (first, second):
        n = np.asarray(v.spatial_shape) - 1
        for corner in ([0, 0, 0], n):
            ras = v.voxel_to_ras(corner)[0]
            assert np.all(ras >= lo - 1e-9) and np.all(ras <= hi + 0.5)


def test_like_grid_reproduces_a_reference_exactly(tmp_path):
    aff = LPS_TO_RAS @ _oblique((0.7, 1.1, 2.3))
    nib.save(nib.Nifti1Image(np.zeros((7, 9, 11), np.float32), aff), tmp_path / "ref.nii.gz")
    grid = like_grid(tmp_path / "ref.nii.gz")
    ref = nib.load(tmp_path / "ref.nii.gz")
    assert grid.shape == (7, 9, 11)
    np.testing.assert_allclose(grid.affine, ref.affine, atol=1e-5)
    vol = Volume(np.zeros((7, 9, 11)), aff)
    assert like_grid(vol).shape == vol.shape
    assert np.array_equal(like_grid(vol).affine, vol.affine)
    out = resample_to(Volume(_smooth((7, 9, 11)), aff), grid, order=1)
    assert out.shape == grid.shape and np.array_equal(out.affine, grid.affine)


def test_resample_to_honours_affines_permuted_and_flipped():
    arr = _smooth((12, 14, 16))
    vol = Volume(arr, _oblique((1.0, 1.2, 1.4)))
    # The same voxels, stored with axes reversed and permuted: world unchanged.
    flipped = arr[::-1].transpose(2, 0, 1)
    aff = vol.affine.copy()
    aff[:3, 3] = vol.voxel_to_ras([[11, 0, 0]])[0]
    aff[:3, 0] = -vol.affine[:3, 0]
    perm = np.eye(4)
    perm[:3, :3] = aff[:3, :3][:, [2, 0, 1]]
    perm[:3, 3] = aff[:3, 3]
    other = Volume(flipped, perm)
    back = resample_to(other, OutputGrid(vol.spatial_shape, vol.affine), order=1)
    np.testing.assert_allclose(back.array, arr, atol=1e-5)


def test_bspline_beats_linear_on_a_smooth_volume_and_metrics_rank_them():
    truth = Volume(_smooth((24, 24, 48), wiggle=12.0), np.diag([1.0, 1.0, 1.0, 1.0]))
    stack = simulate_stack(truth, 2, SliceProfile("box", 1.0, 4.0), inside=False)
    grid = like_grid(truth)
    lin = interpolate(stack, grid, "linear").array
    bsp = interpolate(stack, grid, "bspline").array
    mask = np.zeros(truth.shape, bool)
    mask[:, :, 4:-4] = True
    assert psnr(truth.array, bsp, mask) > psnr(truth.array, lin, mask)
    assert ssim(truth.array, bsp, mask) >= ssim(truth.array, lin, mask) - 1e-6
    assert psnr(truth.array, truth.array, mask) == float("inf")
    assert ssim(truth.array, truth.array, mask) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="method"):
        interpolate(stack, grid, "sinc")


def test_psnr_known_value():
    a = np.zeros((8, 8, 8))
    a[0, 0, 0] = 10.0
    b = a + 1.0
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, b, data_range=100.0) == pytest.approx(40.0)


def test_body_mask_ct_and_mr():
    ct = np.full((32, 32, 8), -1000.0, np.float32)
    yy, xx = np.mgrid[:32, :32]
    body = (yy - 16) ** 2 + (xx - 16) ** 2 < 12**2
    lung = (yy - 16) ** 2 + (xx - 12) ** 2 < 3**2
    ct[body] = 40.0
    ct[lung] = -900.0
    ct[1, 1] = 300.0  # a speck of table outside the body
    m = body_mask(ct, "CT")
    assert np.array_equal(m[..., 3], body)
    noise = np.random.default_rng(0).uniform(0, 20, (32, 32, 8))
    mr = (np.where(body, 500.0, 0.0)[..., None] + noise).astype(np.float32)
    assert np.array_equal(body_mask(Volume(mr, np.eye(4)))[..., 0], body)


def test_isotropic_grid_of_an_lps_permuted_stack_keeps_its_axes():
    # Voxel axis 0 thick and running S, 1 running L, 2 running P (LPS storage).
    lps = np.zeros((4, 4))
    lps[:3, :3] = np.array([[0, 0.6, 0], [0, 0, 0.6], [3.0, 0, 0]])
    lps[:3, 3] = [40.0, 25.0, -60.0]
    lps[3, 3] = 1.0
    stack = Volume(np.zeros((5, 16, 18), np.float32), LPS_TO_RAS @ lps)
    grid = isotropic_grid([stack])
    assert grid.shape == (21, 16, 18)
    np.testing.assert_allclose(grid.affine[:3, 1:3], stack.affine[:3, 1:3], atol=1e-12)
    np.testing.assert_allclose(grid.affine[:3, 0] * 5, stack.affine[:3, 0], atol=1e-12)
    np.testing.assert_allclose(grid.affine[:3, 3], stack.affine[:3, 3], atol=1e-12)
    assert "".join(stack.orientation_codes()) == "SLP"
