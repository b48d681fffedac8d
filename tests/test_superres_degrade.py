"""The forward operator: ramps, impulse responses, sums, and centre planes in world space."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.space import LPS_TO_RAS
from medrecon.superres import SliceProfile, profile_from_volume
from medrecon.superres.degrade import (
    as_operator,
    degrade_axis,
    simulate_stack,
    slice_centres,
    weight_matrix,
)
from medrecon.volume import Volume


@pytest.mark.parametrize(("kind", "thickness"), [("box", 4.0), ("box", 1.5), ("gaussian", 4.3)])
@pytest.mark.parametrize("centre", [20.0, 20.37, 21.5])
def test_profile_of_a_ramp_is_the_ramp_at_the_centre(kind, thickness, centre):
    # Exact for a box whose width is a whole number of fine voxels (both edge cells are
    # cut at the same fraction) at any centre, and for a Gaussian of FWHM T.
    h = 0.5
    x = np.arange(100) * h
    ramp = 3.0 * x - 7.0
    p = SliceProfile(kind, thickness, thickness)
    got = degrade_axis(ramp[:, None, None] * np.ones((1, 2, 2)), 0, h, p, [centre])
    assert got.shape == (1, 2, 2)
    assert got[0, 0, 0] == pytest.approx(3.0 * centre - 7.0, abs=1e-9)


def test_box_of_fractional_width_on_a_ramp_errs_by_at_most_the_cell_model():
    # With T/h not whole, the edge cells are cut unequally; the error of the
    # cell-constant model is bounded by slope * h / 2 * (h / T).
    h, slope = 0.5, 3.0
    ramp = slope * np.arange(100) * h
    p = SliceProfile("box", 4.3, 4.3)
    centres = np.linspace(10, 30, 41)
    err = degrade_axis(ramp, 0, h, p, centres) - slope * centres
    assert np.abs(err).max() <= slope * h / 2 * h / p.thickness + 1e-9


def test_box_partial_voxel_weights():
    # T = 4h centred on a voxel centre: 3 whole cells and two halves.
    w = weight_matrix(SliceProfile("box", 2.0, 2.0), 0.5, 11, [2.5])
    np.testing.assert_allclose(w[0, 3:8], [0.125, 0.25, 0.25, 0.25, 0.125])
    assert w[0].sum() == pytest.approx(1.0)
    assert np.count_nonzero(w) == 5


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_impulse_response_is_the_profile(kind):
    # A unit impulse at fine voxel m, seen by slices at many centres c, traces the
    # profile: response(c) = integral of the profile over cell m, ~ h * density(m h - c).
    h, m = 0.05, 200
    p = SliceProfile(kind, 3.0, 3.0)
    impulse = np.zeros(401)
    impulse[m] = 1.0
    centres = np.linspace(m * h - 6, m * h + 6, 241)
    resp = degrade_axis(impulse, 0, h, p, centres, normalise=False)
    edges_lo = m * h - h / 2 - centres
    exact = p.cdf(edges_lo + h) - p.cdf(edges_lo)
    np.testing.assert_allclose(resp, exact, atol=1e-12)
    inside = np.abs(centres - m * h) < p.thickness / 2 - h
    if kind == "box":
        np.testing.assert_allclose(resp[inside], h / p.thickness, rtol=1e-9)
    else:
        np.testing.assert_allclose(resp, h * p.density(m * h - centres), atol=2e-4 * resp.max())
    assert resp.sum() * (centres[1] - centres[0]) == pytest.approx(h, rel=1e-3)


@pytest.mark.parametrize(
    ("kind", "thickness", "spacing"), [("box", 4.0, 4.0), ("gaussian", 4.0, 2.0)]
)
def test_integral_preserved(kind, thickness, spacing):
    # Exact for contiguous box slices (the windows tile the axis); for a Gaussian the
    # sum over slices is the Gaussian sampled every `spacing`, flat to exp(-2 pi^2
    # sigma^2 / spacing^2) (~1e-6 here).
    rng = np.random.default_rng(1)
    h, n = 1.0, 64
    signal = np.zeros(n)
    signal[16:48] = rng.uniform(0, 10, 32)
    p = SliceProfile(kind, thickness, spacing)
    centres = 1.5 + spacing * np.arange(-40, 40)
    thick = degrade_axis(signal, 0, h, p, centres, normalise=False)
    assert thick.sum() * p.spacing == pytest.approx(signal.sum() * h, rel=1e-5)


def test_rows_sum_to_one_and_mean_is_kept():
    p = SliceProfile("gaussian", 3.0, 2.0)
    w = weight_matrix(p, 0.7, 50, slice_centres(50, 0.7, p, inside=False))
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert degrade_axis(np.full((50, 3), 2.5), 0, 0.7, p, [10.0])[0, 0] == pytest.approx(2.5)


def test_centres_inside_the_grid():
    p = SliceProfile("box", 6.0, 6.0)
    c = slice_centres(60, 1.0, p, offset=0.25)
    assert c[0] - 3.0 >= -0.5 and c[-1] + 3.0 <= 59.5
    np.testing.assert_allclose(np.diff(c), 6.0)
    assert (c[0] - 0.25) / 6.0 == pytest.approx(round((c[0] - 0.25) / 6.0))


def _oblique_affine():
    a = np.deg2rad(25.0)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 0.9, 1.1])
    aff[:3, 3] = [-30.0, 12.0, 4.0]
    return aff


def _lps_permuted_affine():
    # Axes stored (k, i, j)-permuted and in LPS: voxel axis 0 runs S, 1 runs L, 2 runs P.
    lps = np.zeros((4, 4))
    lps[:3, :3] = np.array([[0, 0.7, 0], [0, 0, 0.9], [1.2, 0, 0]])
    lps[:3, 3] = [100.0, 80.0, -40.0]
    lps[3, 3] = 1.0
    return LPS_TO_RAS @ lps


@pytest.mark.parametrize("affine", [_oblique_affine(), _lps_permuted_affine()])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_centre_planes_lie_where_the_slices_physically_are(affine, axis):
    # Put a thin bright plane at fine index q along `axis`; the thick slice whose
    # centre plane (from the new affine) passes through that plane's world position
    # is the one that saw it most, and each slice's centre plane matches the
    # physical centre offset + k*spacing mm along the axis's world direction.
    shape = (24, 26, 28)
    vol = Volume(np.zeros(shape, np.float32), affine)
    h = vol.spacing[axis]
    p = SliceProfile("box", 4 * h, 4 * h)
    thick = simulate_stack(vol, axis, p, offset=0.5 * h)
    centres = slice_centres(shape[axis], h, p, 0.5 * h)
    assert thick.shape[axis] == len(centres)
    unit = affine[:3, axis] / h
    for k, c in enumerate(centres):
        idx = np.zeros(3)
        idx[axis] = k
        expected = vol.voxel_to_ras(np.zeros(3))[0] + unit * c
        np.testing.assert_allclose(thick.voxel_to_ras(idx)[0], expected, atol=1e-9)
    # The in-plane axes keep their columns; the thick one keeps its direction.
    for a in range(3):
        if a != axis:
            np.testing.assert_allclose(thick.affine[:3, a], affine[:3, a])
    np.testing.assert_allclose(thick.spacing[axis], p.spacing)
    prof, found, _ = profile_from_volume(thick)
    assert found == axis and prof.relation == "contiguous"


def test_simulated_stack_sees_a_plane_in_the_slice_whose_centre_holds_it():
    affine = _lps_permuted_affine()
    shape = (40, 20, 20)
    arr = np.zeros(shape, np.float32)
    arr[17] = 1.0
    vol = Volume(arr, affine)
    h = vol.spacing[0]
    thick = simulate_stack(vol, 0, SliceProfile("box", 3 * h, 3 * h))
    plane_ras = vol.voxel_to_ras([[17, 0, 0]])
    k = thick.ras_to_voxel(plane_ras)[0, 0]
    assert int(np.argmax(thick.array[:, 0, 0])) == round(k)
    assert thick.meta.extra["slice_thickness"] == pytest.approx(3 * h)


def test_operator_drops_only_entries_too_small_to_matter():
    # A B-spline's geometric tail: 0.268**k reaches float32 denormals past k ~ 65.
    tail = 0.2679 ** np.arange(120.0)
    m = np.vstack([tail, tail[::-1]])
    op = as_operator(m)
    assert op.dtype == np.float32 and op.flags["C_CONTIGUOUS"]
    tiny = np.finfo(np.float32).tiny
    assert not np.any((op != 0) & (np.abs(op) < tiny))  # no denormal left
    assert np.all(op[np.abs(m) >= 1e-9] != 0)  # everything that counts is kept
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_allclose(x @ op, x.astype(np.float64) @ m, rtol=1e-5, atol=1e-6)
