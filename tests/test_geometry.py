"""Slice-stack geometry and resampling on synthetic stacks with exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.io.dicom.geometry import plan_stack_geometry, slice_normal
from medrecon.io.dicom.resample import resample_stack

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _ipps(z):
    return np.array([[0.0, 0.0, zz] for zz in z])


def test_normal_is_row_cross_column():
    np.testing.assert_allclose(slice_normal(AXIAL), [0, 0, 1])
    np.testing.assert_allclose(slice_normal((0, 1, 0, 0, 0, -1)), [-1, 0, 0])  # sagittal


def test_sorting_ignores_input_order():
    z = np.array([4.0, 0.0, 2.0, 6.0])
    geo, order = plan_stack_geometry(AXIAL, _ipps(z), (1.0, 1.0), 4, 4)
    np.testing.assert_array_equal(order, [1, 2, 0, 3])
    assert geo.slice_spacing == pytest.approx(2.0)
    assert not geo.needs_resampling and geo.warnings == []
    np.testing.assert_allclose(geo.affine_lps()[:3, 3], [0, 0, 0])


def test_missing_slice_keeps_regular_spacing():
    z = np.array([0.0, 2.0, 4.0, 8.0, 10.0])  # 6.0 missing
    geo, _ = plan_stack_geometry(AXIAL, _ipps(z), (1.0, 1.0), 2, 2)
    assert geo.missing_slices == 1 and not geo.uneven
    np.testing.assert_allclose(geo.target_positions, [0, 2, 4, 6, 8, 10])
    slices = np.stack([np.full((2, 2), v, np.float32) for v in z])
    out = resample_stack(slices, geo)
    np.testing.assert_allclose(out[0, 0, :], [0, 2, 4, 6, 8, 10])  # linear in z


def test_uneven_spacing_resamples_and_caps_slice_count():
    z = np.array([0.0, 4.0, 8.0, 9.0, 16.0, 23.0])
    geo, _ = plan_stack_geometry(AXIAL, _ipps(z), (1.0, 1.0), 2, 2)
    assert geo.uneven
    assert len(geo.target_positions) == 12  # span/min gap + 1 = 24, capped at 2 x 6
    assert geo.slice_spacing == pytest.approx(23.0 / 11)
    assert any("uneven" in w for w in geo.warnings)


def test_within_tolerance_is_uniform():
    z = np.array([0.0, 2.0, 4.004, 6.0])  # 0.2% jitter < 1% tolerance
    geo, _ = plan_stack_geometry(AXIAL, _ipps(z), (1.0, 1.0), 2, 2)
    assert not geo.uneven and geo.missing_slices == 0 and not geo.needs_resampling


def test_gantry_tilt_shear_is_undone_exactly_for_integer_shifts():
    # Each slice shifted one row (1 mm) along the column direction per 2 mm step.
    rows, cols, n = 6, 5, 4
    ipps = np.array([[0.0, k * 1.0, k * 2.0] for k in range(n)])
    geo, _ = plan_stack_geometry(AXIAL, ipps, (1.0, 1.0), rows, cols)
    assert geo.tilt_deg == pytest.approx(np.degrees(np.arctan2(1.0, 2.0)))
    assert geo.shape == (cols, rows + n - 1, n)
    # A world-fixed pattern: value = world y + 100 * world z.
    slices = np.stack(
        [np.add.outer(np.arange(rows) + k * 1.0, np.zeros(cols)) + 100 * 2.0 * k for k in range(n)]
    ).astype(np.float32)
    out = resample_stack(slices, geo)  # (rows_t, cols_t, n)
    aff = geo.affine_lps()
    for k in range(n):
        for j in range(rows):
            jt = j + k - geo.grid_offset[1]
            world = aff @ np.array([0, jt, k, 1.0])
            assert out[jt, 0, k] == pytest.approx(world[1] + 100 * world[2])
    # Orthogonal axes after correction.
    m = aff[:3, :3]
    assert abs(m[:, 1] @ m[:, 2]) < 1e-12
