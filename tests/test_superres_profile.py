"""SliceProfile: gap/overlap naming, thick-axis detection, header thickness and refusals."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from medrecon.superres import ReconstructError, SliceProfile, profile_from_volume, thick_axis
from medrecon.volume import Volume, VolumeMeta


def _stack(spacing, thickness=None, shape=(8, 8, 8)):
    meta = VolumeMeta(extra={} if thickness is None else {"slice_thickness": thickness})
    return Volume(np.zeros(shape, np.float32), np.diag([*spacing, 1.0]), meta)


def test_relation_names_gap_and_overlap():
    assert SliceProfile("box", 5.0, 5.0).relation == "contiguous"
    gapped = SliceProfile("box", 4.0, 6.0)
    assert (gapped.relation, gapped.gap, gapped.overlap) == ("gapped", 2.0, 0.0)
    over = SliceProfile("gaussian", 6.0, 4.0)
    assert (over.relation, over.gap, over.overlap) == ("overlapping", 0.0, 2.0)
    assert over.factor(1.0) == 4.0


def test_gaussian_fwhm_is_thickness():
    p = SliceProfile("gaussian", 3.0, 3.0)
    peak = p.density(0.0)
    assert p.density(1.5) == pytest.approx(peak / 2)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (("cone", 1.0, 1.0), "kind"),
        (("box", 0.0, 1.0), "thickness"),
        (("box", 1.0, np.nan), "spacing"),
    ],
)
def test_bad_profiles_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        SliceProfile(*bad)


def test_thick_axis_from_column_norms_of_an_oblique_affine():
    rot = np.array([[0.0, 0.8, 0.6], [0.0, -0.6, 0.8], [1.0, 0.0, 0.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.7, 5.0, 0.7])
    assert thick_axis(affine) == 1


def test_isotropic_stack_has_nothing_to_reconstruct():
    with pytest.raises(ReconstructError, match="nothing to reconstruct"):
        thick_axis(np.diag([1.0, 1.0, 1.1, 1.0]))


def test_two_coarse_axes_refused():
    with pytest.raises(ReconstructError, match="one thick"):
        thick_axis(np.diag([1.0, 5.0, 5.0, 1.0]))


def test_profile_from_header_names_the_gap():
    profile, axis, warnings = profile_from_volume(_stack((0.8, 0.8, 6.0), thickness=4.0))
    assert axis == 2
    assert profile == SliceProfile("box", 4.0, 6.0)
    assert any("2 mm gaps" in w for w in warnings)


def test_missing_thickness_assumes_spacing_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="medrecon.superres.profile"):
        profile, axis, warnings = profile_from_volume(_stack((5.0, 1.0, 1.0)), kind="gaussian")
    assert (axis, profile.thickness, profile.spacing, profile.kind) == (0, 5.0, 5.0, "gaussian")
    assert any("assumed equal to the slice spacing" in w for w in warnings)
    assert "assumed" in caplog.text


def test_given_thickness_overrides_header():
    profile, _, warnings = profile_from_volume(_stack((1, 1, 5), thickness=4.0), thickness=5.0)
    assert profile.relation == "contiguous" and warnings == []


def test_4d_series_refused():
    v = Volume(np.zeros((4, 4, 4, 3)), np.diag([1, 1, 5, 1.0]), VolumeMeta(frame_axis="time"))
    with pytest.raises(ReconstructError, match="4D"):
        profile_from_volume(v)
