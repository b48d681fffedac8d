"""Fusion of several stacks on one grid: invariants with known answers, and the real-data goal."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from medrecon.superres import SliceProfile
from medrecon.superres.baselines import body_mask, interpolate, psnr, ssim
from medrecon.superres.degrade import degrade_axis, simulate_stack, slice_centres
from medrecon.superres.fuse import fuse, spectral_weights, transfer_function
from medrecon.superres.grid import OutputGrid, like_grid, resample_to
from medrecon.volume import Volume

log = logging.getLogger(__name__)

BOX = SliceProfile("box", 4.0, 4.0)
AXES = [np.eye(3)[a] for a in range(3)]


def _grid(shape=(24, 20, 16)) -> OutputGrid:
    return OutputGrid(shape, np.diag([1.0, 1.0, 1.0, 1.0]))


def _half(shape, axis, upper=False) -> np.ndarray:
    mask = np.zeros(shape, bool)
    index = [slice(None)] * 3
    n = shape[axis] // 2
    index[axis] = slice(n, None) if upper else slice(0, n)
    mask[tuple(index)] = True
    return mask


def test_transfer_function_and_weights_sum_to_one():
    u = np.array([0.0, 0.125, 0.25])
    np.testing.assert_allclose(transfer_function(BOX, u)[:2], [1.0, np.sinc(0.5) / 2], rtol=1e-5)
    assert abs(transfer_function(BOX, u)[2]) < 1e-6  # the box's first zero, 1/T
    gauss = SliceProfile("gaussian", 4.0, 4.0)
    assert transfer_function(gauss, np.array([0.0]))[0] == pytest.approx(1.0)
    grid = _grid()
    w = spectral_weights(AXES, [BOX] * 3, grid)
    assert w.shape == (3, 24, 20, 9)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(w[:, 0, 0, 0], 1 / 3, atol=1e-6)


def test_a_stack_fine_along_a_direction_owns_that_direction():
    grid = _grid((32, 32, 8))
    # Stack 0 is thick along x, stack 1 along y.
    w = spectral_weights(AXES[:2], [BOX] * 2, grid)
    f = 6  # 6/32 cycles/mm along x: past stack 0's Nyquist (1/8), resolved by stack 1
    assert w[1, f, 0, 0] > 0.99 and w[0, 0, f, 0] > 0.99
    # End to end: a pattern along x past stack 0's Nyquist is blurred and aliased in
    # stack 0, exact in stack 1; the fusion follows stack 1. The alias lands below the
    # Nyquist frequency, where stack 0 keeps some weight, so a little of it remains.
    x = np.arange(32.0)
    truth = np.broadcast_to(np.cos(2 * np.pi * 5 * x / 32)[:, None, None], grid.shape)
    centres = slice_centres(32, 1.0, BOX, inside=False)
    thick = degrade_axis(truth.astype(np.float32), 0, 1.0, BOX, centres)
    affine = np.diag([4.0, 1.0, 1.0, 1.0])
    affine[0, 3] = centres[0]
    blurred = resample_to(Volume(thick, affine), grid, order=3, mode="grid-wrap").array
    out, info = fuse([blurred, truth.copy()], AXES[:2], [BOX] * 2, grid)
    error_blurred, error_fused = np.abs(blurred - truth).max(), np.abs(out - truth).max()
    assert error_blurred > 1.0 and error_fused < 0.2 * error_blurred
    assert info["mean_spectral_weight"][0] == pytest.approx(info["mean_spectral_weight"][1])


def test_constant_and_single_stack_come_back_exactly():
    grid = _grid()
    shape = grid.shape
    coverage = [_half(shape, 0), _half(shape, 1, upper=True), np.ones(shape, bool)]
    const = [np.full(shape, 7.5, np.float32) for _ in range(3)]
    out, info = fuse(const, AXES, [BOX] * 3, grid, coverage)
    np.testing.assert_allclose(out, 7.5, rtol=1e-5)
    json.dumps(info)
    rng = np.random.default_rng(0)
    one = rng.normal(size=shape).astype(np.float32)
    alone, info = fuse([one], AXES[:1], [BOX], grid)
    np.testing.assert_array_equal(alone, one)
    assert info["mean_spectral_weight"] == [1.0]


def test_where_one_stack_covers_alone_the_output_is_that_stack_without_seams():
    grid = _grid((40, 12, 12))
    shape = grid.shape
    rng = np.random.default_rng(1)
    a, b = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
    cov_a = np.ones(shape, bool)
    cov_b = _half(shape, 0, upper=True)  # b has data for x >= 20 only
    out, _ = fuse([a, b], AXES[1:], [BOX] * 2, grid, [cov_a, cov_b], feather_mm=8.0)
    np.testing.assert_array_equal(out[:20], a[:20])
    # A stack of zeros beside a stack of ones: the blend ramps with no step.
    zeros, ones = np.zeros(shape, np.float32), np.ones(shape, np.float32)
    ramp, _ = fuse([zeros, ones], AXES[1:], [BOX] * 2, grid, [cov_a, cov_b], feather_mm=8.0)
    profile = ramp[:, 6, 6]
    assert np.all(profile[:20] == 0.0) and profile[20] > 0
    np.testing.assert_allclose(profile[28:], 0.5, atol=1e-2)  # both sharp along x: equal
    assert np.all(np.diff(profile) >= -1e-6) and np.diff(profile).max() < 0.1


def test_three_orthogonal_4x_stacks_beat_the_best_single_stack_by_3_db(shared_data):
    from medrecon.io import load

    path = shared_data / "ct-abdomen" / "ct.nii.gz"
    if not path.exists():
        pytest.skip(f"{path} absent")
    v = load(path)
    truth = Volume(np.asarray(v.array, np.float32), v.affine, v.meta)
    h = truth.spacing[0]
    profile = SliceProfile("box", 4 * h, 4 * h)
    grid = like_grid(truth)
    stacks = [simulate_stack(truth, axis, profile) for axis in range(3)]
    interpolated = [interpolate(s, grid, "bspline").array for s in stacks]
    ijk = np.indices(grid.shape).reshape(3, -1).T
    world = ijk @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    coverage = []
    for s in stacks:
        idx = s.ras_to_voxel(world)
        inside = np.all((idx >= -1e-6) & (idx <= np.asarray(s.shape) - 1 + 1e-6), axis=1)
        coverage.append(inside.reshape(grid.shape))
    directions = [s.direction[:, axis] for axis, s in enumerate(stacks)]
    fused, info = fuse(interpolated, directions, [profile] * 3, grid, coverage)
    mask = body_mask(truth, "CT") & np.logical_and.reduce(coverage)
    singles = [(psnr(truth.array, x, mask), ssim(truth.array, x, mask)) for x in interpolated]
    ours = (psnr(truth.array, fused, mask), ssim(truth.array, fused, mask))
    log.info("B-spline per stack (PSNR, SSIM) %s; fused %s; %s", singles, ours, info)
    best = max(singles)
    assert ours[0] >= best[0] + 3.0, (singles, ours)
    assert ours[1] > best[1]
