"""Real data: a stack simulated from the shared CT keeps its geometry; metrics make sense."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.superres import SliceProfile, profile_from_volume
from medrecon.superres.baselines import body_mask, interpolate, psnr, ssim
from medrecon.superres.degrade import simulate_stack
from medrecon.superres.grid import isotropic_grid, like_grid
from medrecon.volume import Volume


@pytest.fixture(scope="module")
def ct(shared_data):
    from medrecon.io import load

    path = shared_data / "ct-abdomen" / "ct.nii.gz"
    if not path.exists():
        pytest.skip(f"{path} absent")
    v = load(path)
    # A central 64x64 block of every slice keeps the test fast.
    i0, j0 = (v.shape[0] - 64) // 2, (v.shape[1] - 64) // 2
    affine = v.affine.copy()
    affine[:3, 3] = v.voxel_to_ras([[i0, j0, 0]])[0]
    return Volume(np.asarray(v.array[i0 : i0 + 64, j0 : j0 + 64], np.float32), affine, v.meta)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_simulated_ct_stack_geometry_and_baselines(ct, kind):
    h = ct.spacing[2]
    stack = simulate_stack(ct, 2, SliceProfile(kind, 2 * h, 2 * h), offset=h)
    profile, axis, warnings = profile_from_volume(stack, kind=kind)
    assert (axis, profile.relation, warnings) == (2, "contiguous", [])
    # Slice k's centre plane is the source plane at fine index (first_centre + k*2h)/h.
    first = stack.meta.extra["simulated"]["first_centre_mm"] / h
    for k in (0, stack.shape[2] - 1):
        np.testing.assert_allclose(
            stack.voxel_to_ras([[3, 5, k]]), ct.voxel_to_ras([[3, 5, first + 2 * k]]), atol=1e-6
        )
    grid = isotropic_grid([stack])
    assert grid.shape[:2] == ct.shape[:2]
    truth_grid = like_grid(ct)
    mask = body_mask(ct, "CT")
    lo = int(np.ceil(first)) + 1
    mask[..., :lo] = mask[..., -lo:] = False
    scores = {}
    for method in ("linear", "bspline"):
        out = interpolate(stack, truth_grid, method).array
        scores[method] = (psnr(ct.array, out, mask), ssim(ct.array, out, mask))
    for p, s in scores.values():
        assert 20.0 < p < 80.0 and 0.5 < s <= 1.0


def _dicom(shared_data, name):
    from medrecon.io import load_all

    path = shared_data / "dicom" / name
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    return load_all(path)


def test_real_dicom_ct_profile_from_its_header(shared_data):
    (v,) = _dicom(shared_data, "ct-philips-axial")[:1]
    profile, axis, warnings = profile_from_volume(v)
    assert axis == 2 and warnings == []
    assert (profile.kind, profile.thickness, profile.relation) == ("box", 5.0, "contiguous")
    assert profile.spacing == pytest.approx(v.spacing[2])
    grid = isotropic_grid([v])
    np.testing.assert_allclose(grid.spacing, min(v.spacing[:2]))
    assert grid.shape[:2] == v.shape[:2]


def test_real_4d_mr_series_is_refused(shared_data):
    from medrecon.superres import ReconstructError

    v = _dicom(shared_data, "mr-orientation")[0]
    if v.array.ndim != 4:
        pytest.skip("series is not 4D in this copy of the data")
    with pytest.raises(ReconstructError, match="4D"):
        profile_from_volume(v)
