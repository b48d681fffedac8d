"""Rigid registration of stacks onto the first one, and the checks that stacks belong together."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medrecon.superres import ReconstructError, SliceProfile
from medrecon.superres.degrade import simulate_stack
from medrecon.superres.register import (
    Registration,
    apply_rigid,
    check_stacks,
    euler_angles_deg,
    overlap_fraction,
    register_rigid,
)
from medrecon.volume import Volume, VolumeMeta


def _rotation(axis: int, deg: float) -> np.ndarray:
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    r = np.eye(4)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


def _box(shape=(20, 20, 10), spacing=(2.0, 2.0, 6.0), origin=(0.0, 0.0, 0.0), modality=None):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return Volume(np.zeros(shape, np.float32), affine, VolumeMeta(modality=modality))


def test_overlap_fraction_counts_the_smaller_box():
    a = _box()  # voxel centres span 38 x 38 x 54 mm
    assert overlap_fraction(a, a) == 1.0
    half = _box(origin=(19.0, 0.0, 0.0))
    assert overlap_fraction(a, half) == pytest.approx(5 / 9, abs=1e-9)  # lattice of 9
    small = _box(shape=(5, 5, 3), origin=(10.0, 10.0, 10.0))
    assert overlap_fraction(a, small) == overlap_fraction(small, a) == 1.0
    assert overlap_fraction(a, _box(origin=(500.0, 0.0, 0.0))) == 0.0


def test_check_stacks_refuses_with_indices_and_warns_on_weak_overlap():
    a = _box(modality="MR")
    assert check_stacks([a, _box(modality="MR"), _box()]) == []
    with pytest.raises(ReconstructError, match=r"stack 2 overlaps the first stack \(stack 0\)"):
        check_stacks([a, a, _box(origin=(500.0, 0.0, 0.0))])
    with pytest.raises(ReconstructError, match="stack 0 is MR, stack 1 is CT"):
        check_stacks([a, _box(modality="CT")])
    four = Volume(np.zeros((4, 4, 4, 2), np.float32), np.eye(4))
    with pytest.raises(ReconstructError, match=r"stack\(s\) \[1\] are not 3D"):
        check_stacks([a, four])
    warnings = check_stacks([a, _box(origin=(25.0, 0.0, 0.0))])
    assert len(warnings) == 1 and "stack 1" in warnings[0]


def test_apply_rigid_and_euler_angles():
    m = _rotation(2, 3.0) @ _rotation(0, -2.0)
    m[:3, 3] = [1.0, 2.0, 3.0]
    reg = Registration(m, euler_angles_deg(m[:3, :3]), (1.0, 2.0, 3.0), -0.1, -0.2, 5, True)
    np.testing.assert_allclose(reg.rotation_deg, (-2.0, 0.0, 3.0), atol=1e-9)
    v = _box()
    moved = apply_rigid(v, reg)
    assert moved.array is v.array
    np.testing.assert_allclose(moved.affine, m @ v.affine)
    json.dumps(reg.describe())


@pytest.fixture(scope="module")
def volumes(shared_data):
    from medrecon.io import load

    out = {}
    for name in ("ct-abdomen/ct.nii.gz", "mr-abdomen/mr.nii.gz"):
        path = shared_data / name
        if not path.exists():
            pytest.skip(f"{path} absent")
        v = load(path)
        out[name.split("-")[0]] = Volume(np.asarray(v.array, np.float32), v.affine, v.meta)
    return out


def _truth_motion(v: Volume) -> np.ndarray:
    """4, -3, 2 mm and 3 degrees about S through the volume's centre (RAS)."""
    centre = v.voxel_to_ras([(np.asarray(v.shape) - 1) / 2])[0]
    g = _rotation(2, 3.0)
    g[:3, 3] = np.array([4.0, -3.0, 2.0]) + centre - g[:3, :3] @ centre
    return g


def _errors(matrix: np.ndarray, v: Volume) -> tuple[float, float]:
    """Largest displacement (mm) over the volume's corners and the rotation (deg) of ``matrix``."""
    n = np.asarray(v.shape) - 1
    corners = v.voxel_to_ras([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])])
    moved = corners @ matrix[:3, :3].T + matrix[:3, 3]
    angle = math.acos(np.clip((np.trace(matrix[:3, :3]) - 1) / 2, -1, 1))
    return float(np.linalg.norm(moved - corners, axis=1).max()), math.degrees(angle)


@pytest.mark.parametrize(
    ("name", "factor", "fixed_axis", "moving_axis"),
    [
        ("ct", 4, 2, 0),  # RAS on disk
        ("mr", 2, 2, 1),  # LPS on disk: the LPS <-> RAS conversion must hold either way
    ],
)
def test_registration_recovers_a_known_rigid_motion(volumes, name, factor, fixed_axis, moving_axis):
    v = volumes[name]
    g = _truth_motion(v)
    moved = Volume(v.array, g @ v.affine, v.meta)
    h = v.spacing[0]
    profile = SliceProfile("box", factor * h, factor * h)
    fixed = simulate_stack(v, fixed_axis, profile)
    moving = simulate_stack(moved, moving_axis, profile)
    reg = register_rigid(moving, fixed)
    assert reg.ok, reg.reason
    # The recovered matrix undoes the motion: matrix @ g is identity within ~1 mm / 0.5 deg.
    shift, angle = _errors(reg.matrix @ g, v)
    assert shift < 1.0 and angle < 0.5, (shift, angle)
    assert reg.metric_after < reg.metric_before
    np.testing.assert_allclose(reg.rotation_deg, (0.0, 0.0, -3.0), atol=0.5)
    aligned = apply_rigid(moving, reg)
    np.testing.assert_allclose(aligned.affine, reg.matrix @ moving.affine)


def test_registration_keeps_aligned_stacks_and_refuses_hopeless_ones(volumes):
    v = volumes["mr"]
    profile = SliceProfile("box", 6.0, 6.0)
    fixed = simulate_stack(v, 2, profile)
    moving = simulate_stack(v, 0, profile)
    same = register_rigid(moving, fixed)
    assert same.ok, same.reason
    shift, angle = _errors(same.matrix, v)
    assert shift < 1.0 and angle < 0.5, (shift, angle)

    far = np.eye(4)
    far[:3, 3] = [35.0, 0.0, 0.0]
    lost = register_rigid(Volume(moving.array, far @ moving.affine, moving.meta), fixed)
    assert not lost.ok and "above the 20 mm limit" in lost.reason

    rng = np.random.default_rng(0)
    noise = Volume(rng.normal(size=moving.shape).astype(np.float32), moving.affine, moving.meta)
    bad = register_rigid(noise, fixed)
    assert not bad.ok and bad.reason
    assert json.loads(json.dumps(bad.describe()))["ok"] is False

    apart = Volume(moving.array, moving.affine.copy(), moving.meta)
    apart.affine[:3, 3] += [1000.0, 0.0, 0.0]
    none = register_rigid(apart, fixed)
    assert not none.ok and "barely overlap" in none.reason
