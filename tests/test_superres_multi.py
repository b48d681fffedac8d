"""medrecon.reconstruct on several stacks: fusion beats each stack, failures are left out."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.superres import ReconstructError, SliceProfile
from medrecon.superres.api import reconstruct
from medrecon.superres.baselines import psnr
from medrecon.superres.degrade import simulate_stack
from medrecon.testing.shapes import random_ellipsoids
from medrecon.volume import Volume


@pytest.fixture(scope="module")
def truth():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-24.0, -30.0, 12.0)
    return Volume(random_ellipsoids(48, 5), affine)


def _stacks(truth):
    profile = SliceProfile("box", 4.0, 4.0)
    return [simulate_stack(truth, a, profile, offset=1.0) for a in (2, 0, 1)]


def _inner(array):
    # Where all three stacks have slices on both sides.
    return array[2:-4, 2:-4, 2:-4]


def test_three_orthogonal_stacks_fuse_above_every_single_stack(truth):
    stacks = _stacks(truth)
    singles = [
        psnr(
            _inner(truth.array), _inner(reconstruct([s], like=truth, method="bspline").volume.array)
        )
        for s in stacks
    ]
    r = reconstruct(stacks, like=truth, method="bspline", register=False)
    fused = psnr(_inner(truth.array), _inner(r.volume.array))
    assert fused > max(singles) + 2.0, (fused, singles)
    assert [e["used"] for e in r.sidecar["stacks"]] == [True, True, True]
    assert [e["thick_axis"] for e in r.sidecar["stacks"]] == [2, 0, 1]
    assert r.sidecar["fusion"]["method"]
    np.testing.assert_array_equal(r.volume.affine, truth.affine)


def test_registered_stacks_keep_their_parameters_in_the_sidecar(truth):
    r = reconstruct(_stacks(truth), like=truth, method="bspline")
    first, *others = r.sidecar["stacks"]
    assert first["registration"] == "reference (stack 0)"
    for entry in others:
        reg = entry["registration"]
        assert reg["ok"] is True
        # Aligned 4 mm stacks of a 48 mm object: the optimum wanders by about a degree.
        assert reg["centre_shift_mm"] < 1.5 and reg["rotation_angle_deg"] < 3.0


def test_a_stack_that_fails_to_register_is_reported_and_left_out(truth):
    stacks = _stacks(truth)
    rng = np.random.default_rng(0)
    noise = Volume(rng.normal(size=stacks[1].shape).astype(np.float32), stacks[1].affine)
    r = reconstruct([stacks[0], noise, stacks[2]], like=truth, method="bspline")
    used = {e["index"]: e["used"] for e in r.sidecar["stacks"]}
    assert used == {0: True, 1: False, 2: True}
    left_out = next(e for e in r.sidecar["stacks"] if e["index"] == 1)
    assert left_out["registration"]["ok"] is False and left_out["registration"]["reason"]
    assert any("stack 1 failed to register" in w for w in r.sidecar["warnings"])


def test_stacks_that_do_not_overlap_are_refused(truth):
    a, b, _ = _stacks(truth)
    far = b.affine.copy()
    far[:3, 3] += (400.0, 0.0, 0.0)
    with pytest.raises(ReconstructError, match="overlaps the first stack"):
        reconstruct([a, Volume(b.array, far)], method="bspline")
