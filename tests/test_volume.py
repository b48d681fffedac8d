"""Volume geometry on synthetic grids with exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.space import LPS_TO_RAS
from medrecon.volume import Volume, VolumeMeta


def _oblique_affine() -> np.ndarray:
    """Rotation of 30 degrees about S, spacing 0.5 x 0.75 x 2.5 mm, with an offset."""
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.5, 0.75, 2.5])
    affine[:3, 3] = [-10.0, 20.0, 30.0]
    return affine


def test_geometry_properties_of_oblique_grid():
    vol = Volume(np.zeros((4, 5, 6), np.int16), _oblique_affine())
    assert vol.shape == (4, 5, 6)
    assert vol.spatial_shape == (4, 5, 6)
    np.testing.assert_allclose(vol.spacing, (0.5, 0.75, 2.5), atol=1e-12)
    np.testing.assert_allclose(vol.direction.T @ vol.direction, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(vol.origin, [-10.0, 20.0, 30.0])
    np.testing.assert_allclose(vol.lps_affine[:2], -vol.affine[:2])
    np.testing.assert_allclose(vol.lps_affine[2:], vol.affine[2:])


def test_voxel_ras_round_trip():
    vol = Volume(np.zeros((4, 5, 6)), _oblique_affine())
    ijk = np.array([[0, 0, 0], [3, 4, 5], [1.5, 2.25, 0.5]])
    ras = vol.voxel_to_ras(ijk)
    np.testing.assert_allclose(ras[0], vol.origin)
    # The k axis runs along S only, 2.5 mm a step.
    np.testing.assert_allclose(vol.voxel_to_ras([0, 0, 2])[0], vol.origin + np.array([0, 0, 5.0]))
    np.testing.assert_allclose(vol.ras_to_voxel(ras), ijk, atol=1e-12)


@pytest.mark.parametrize(
    ("affine", "codes"),
    [
        (np.diag([1.0, 1.0, 1.0, 1.0]), ("R", "A", "S")),
        (LPS_TO_RAS, ("L", "P", "S")),
        (np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]]), ("A", "I", "R")),
    ],
)
def test_orientation_codes(affine, codes):
    assert Volume(np.zeros((2, 2, 2)), affine).orientation_codes() == codes


def test_with_array_keeps_grid_and_copies_meta():
    meta = VolumeMeta(modality="CT", extra={"k": [1]})
    vol = Volume(np.zeros((2, 3, 4)), _oblique_affine(), meta)
    other = vol.with_array(np.ones((2, 3, 4), np.uint8))
    np.testing.assert_array_equal(other.affine, vol.affine)
    assert other.meta.modality == "CT"
    other.meta.extra["k"].append(2)
    assert vol.meta.extra["k"] == [1]
    other.affine[0, 3] = 99.0
    assert vol.affine[0, 3] == -10.0


@pytest.mark.parametrize(
    ("array", "affine"),
    [
        (np.zeros((2, 3)), np.eye(4)),
        (np.zeros((2, 3, 4, 5, 6)), np.eye(4)),
        (np.zeros((2, 3, 4)), np.eye(3)),
        (np.zeros((2, 3, 4)), np.diag([1.0, 0.0, 1.0, 1.0])),
        (np.zeros((2, 3, 4)), np.full((4, 4), np.nan)),
    ],
)
def test_invalid_volume_rejected(array, affine):
    with pytest.raises(ValueError, match="Volume"):
        Volume(array, affine)


def test_repr_names_shape_and_orientation():
    text = repr(Volume(np.zeros((2, 3, 4), np.float32), LPS_TO_RAS))
    assert "shape=(2, 3, 4)" in text
    assert "orientation=LPS" in text
    assert "float32" in text
