"""Self-supervised pairs: the input has the through-plane resolution, the target is the stack."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.superres import SliceProfile
from medrecon.superres.degrade import degrade_axis
from medrecon.superres.pairs import degrade_in_plane, make_pairs, upsample_axis
from medrecon.volume import Volume


def _blobs(shape, seed=0):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    out = np.zeros(shape)
    for _ in range(6):
        c = [rng.uniform(0, s) for s in shape]
        r = rng.uniform(3, 8)
        out += np.exp(-sum((g - ci) ** 2 for g, ci in zip(grids, c)) / (2 * r * r))
    return out.astype(np.float32)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_degrading_the_target_reproduces_the_pairs_thick_samples(kind):
    target = _blobs((48, 40, 10))
    p = SliceProfile(kind, 3.2, 4.0)
    deg = degrade_in_plane(target, 0, 0.8, p, offset=0.3)
    again = degrade_axis(target, 0, 0.8, p, deg.centres)
    np.testing.assert_allclose(again, deg.thick, rtol=1e-6)
    np.testing.assert_allclose(np.diff(deg.centres), p.spacing)
    up = upsample_axis(again, 0, deg.centres, 48, 0.8)
    np.testing.assert_allclose(up, deg.upsampled, rtol=1e-6)
    # The input carries no more detail than the thick samples: it matches the samples
    # at their centres (cubic B-spline interpolation passes through them).
    at = np.round(deg.centres / 0.8).astype(int)
    on_grid = np.isclose(deg.centres / 0.8, at)
    np.testing.assert_allclose(deg.upsampled[at[on_grid]], deg.thick[on_grid], atol=1e-5)


def test_make_pairs_shapes_scale_and_degradation_axis():
    stack = Volume(_blobs((40, 36, 8)), np.diag([1.0, 1.0, 4.0, 1.0]))
    p = SliceProfile("box", 4.0, 4.0)
    pairs = make_pairs(stack, p, 2, patch=16, n=11, seed=3)
    assert pairs.inputs.shape == pairs.targets.shape == (11, 1, 16, 16)
    assert pairs.inputs.dtype == np.float32 and pairs.axes == (0, 1)
    lo, hi = pairs.scale
    assert lo < hi
    # Degraded along patch dimension 0 only: rows differ from the target's much more
    # than columns' second differences would suggest; re-degrading columns is a no-op.
    err_rows = np.abs(np.diff(pairs.inputs, 2, axis=2) - np.diff(pairs.targets, 2, axis=2))
    grad0_in = np.abs(np.diff(pairs.inputs, axis=2)).mean()
    grad0_out = np.abs(np.diff(pairs.targets, axis=2)).mean()
    assert err_rows.max() < 1.0 and grad0_in < grad0_out
    again = make_pairs(stack, p, 2, patch=16, n=11, seed=3)
    np.testing.assert_array_equal(again.inputs, pairs.inputs)


def test_make_pairs_crops_to_a_small_plane():
    stack = Volume(_blobs((12, 30, 6)), np.diag([1.0, 1.0, 5.0, 1.0]))
    pairs = make_pairs(stack, SliceProfile("gaussian", 5.0, 5.0), 2, patch=16, n=4)
    assert pairs.inputs.shape == (4, 1, 12, 12)
