"""Synthesis from label maps and contrast phases, on label maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.train.phases import PHASES, apply_phase, phase_groups, phase_targets
from medrecon.train.synth import (
    CLUSTER_BASE,
    intensity_clusters,
    render,
    sample_mixture,
    synthesise,
    tissue_map,
)


def _blocks() -> np.ndarray:
    """A 3-class label map: four 16-voxel blocks along x (classes 0, 1, 2, 1)."""
    tissue = np.zeros((64, 20, 20), dtype=np.uint8)
    tissue[16:32] = 1
    tissue[32:48] = 2
    tissue[48:] = 1
    return tissue


def test_rendered_image_follows_the_sampled_mixture():
    tissue = _blocks()
    means, stds = np.array([0.05, 0.3, 0.9]), np.array([0.01, 0.02, 0.05])
    image = render(tissue, means, stds, seed=3).numpy()
    assert image.min() == 0.0 and image.max() == 1.0
    # render rescales to [0, 1], an affine map: the class means and deviations, mapped
    # back with the scale between two classes, are the sampled ones.
    got = np.array([image[tissue == v].mean() for v in range(3)])
    scale = (got[2] - got[0]) / (means[2] - means[0])
    np.testing.assert_allclose((got - got[0]) / scale, means - means[0], atol=2e-3)
    sds = np.array([image[tissue == v].std() for v in range(3)]) / scale
    np.testing.assert_allclose(sds, stds, rtol=0.05)


def test_sampled_mixture_keeps_air_dark_and_is_seeded():
    a = sample_mixture(50, np.random.RandomState(1), std_max=0.1, dark_max=0.1)
    b = sample_mixture(50, np.random.RandomState(1), std_max=0.1, dark_max=0.1)
    np.testing.assert_array_equal(a[0], b[0])
    means, stds = a
    assert 0 <= means[0] <= 0.1 and 0 <= stds[0] <= 0.05
    assert means.min() >= 0 and means.max() <= 1 and stds.max() <= 0.1
    # Fifty uniform draws span most of [0, 1].
    assert means[1:].max() - means[1:].min() > 0.8


def test_air_is_sometimes_drawn_like_any_other_class():
    dark = [sample_mixture(5, np.random.RandomState(s), dark_prob=0.5)[0][0] for s in range(200)]
    share_dark = np.mean(np.array(dark) <= 0.1)
    # Dark half the time, plus the 10% of uniform draws that land below 0.1 anyway.
    assert 0.45 < share_dark < 0.7
    assert max(dark) > 0.5
    always = [sample_mixture(5, np.random.RandomState(s))[0][0] for s in range(50)]
    assert max(always) <= 0.1


def test_synthesised_images_differ_in_contrast_but_keep_the_boundaries():
    tissue = _blocks()
    one = synthesise(tissue, np.random.RandomState(0), blur_max=0.0).numpy()
    two = synthesise(tissue, np.random.RandomState(1), blur_max=0.0).numpy()
    assert one.shape == tissue.shape and one.min() >= 0 and one.max() <= 1
    m1 = np.array([one[tissue == v].mean() for v in range(3)])
    m2 = np.array([two[tissue == v].mean() for v in range(3)])
    assert np.abs(m1 - m2).max() > 0.1  # another draw, another contrast
    # The same class in the two separate blocks (x 16-32 and 48-64) has one mean.
    assert abs(one[16:32].mean() - one[48:].mean()) < 0.02


def test_intensity_clusters_recover_the_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(m, 0.02, 5000) for m in (0.0, 0.2, 0.5, 0.95)])
    np.testing.assert_allclose(intensity_clusters(values, 4), [0.0, 0.2, 0.5, 0.95], atol=0.01)


def test_tissue_map_keeps_labels_and_orders_unlabelled_clusters_by_intensity():
    image = np.zeros((30, 10, 10), dtype=np.float32)
    image[10:20] = 0.5
    image[20:] = 1.0
    source = np.zeros(image.shape, dtype=np.uint8)
    source[12:14] = 7  # a labelled structure inside the middle plateau
    tissue = tissue_map(image, source, 3)
    assert (tissue[12:14] == 7).all()
    assert (tissue[:10] == 0).all()  # darkest cluster: air, the padding value
    assert (tissue[10:12] == CLUSTER_BASE + 1).all() and (tissue[14:20] == CLUSTER_BASE + 1).all()
    assert (tissue[20:] == CLUSTER_BASE + 2).all()


def test_tissue_map_refuses_values_it_cannot_hold():
    image = np.zeros((4, 4, 4), dtype=np.float32)
    source = np.full(image.shape, CLUSTER_BASE, dtype=np.uint8)
    with pytest.raises(InputError, match="below 240"):
        tissue_map(image, source, 4)
    with pytest.raises(InputError, match="synth_clusters"):
        tissue_map(image, np.zeros_like(source), 0)


def test_phase_moves_each_structure_mean_to_its_target_and_keeps_texture():
    rng = np.random.default_rng(0)
    tissue = np.zeros((40, 10, 10), dtype=np.uint8)
    tissue[:10], tissue[10:20], tissue[20:30] = 5, 2, 3  # liver, kidney right, kidney left
    hu = rng.normal(40, 10, tissue.shape).astype(np.float32)
    groups = phase_groups({5: "liver", 2: "kidney_right", 3: "kidney_left", 9: "colon"})
    assert groups == {"liver": (5,), "kidney": (2, 3)}
    targets = phase_targets("portal_venous")
    assert targets["liver"] == pytest.approx(np.mean(PHASES["portal_venous"]["liver"]))
    out = apply_phase(hu, tissue, groups, targets)
    for value, group in ((5, "liver"), (2, "kidney"), (3, "kidney")):
        m = tissue == value
        assert out[m].mean() == pytest.approx(targets[group], abs=1e-3)
        assert out[m].std() == pytest.approx(hu[m].std(), rel=1e-4)
    np.testing.assert_array_equal(out[tissue == 0], hu[tissue == 0])
    # In a windowed image (HU -200..300 -> 0..1) the same targets land in window units.
    windowed = apply_phase((hu + 200) / 500, tissue, groups, targets, scale=1 / 500, offset=0.4)
    assert windowed[tissue == 5].mean() == pytest.approx((targets["liver"] + 200) / 500, abs=1e-5)


def test_phase_targets_are_drawn_inside_the_ranges():
    rng = np.random.default_rng(1)
    for phase, ranges in PHASES.items():
        for _ in range(5):
            for group, value in phase_targets(phase, rng).items():
                lo, hi = ranges[group]
                assert lo <= value <= hi
    with pytest.raises(ValueError, match="unknown contrast phase"):
        phase_targets("venous")
    # Arterial blood is brighter than portal-venous blood, which is brighter than native.
    mid = {p: phase_targets(p)["artery"] for p in PHASES}
    assert mid["arterial"] > mid["portal_venous"] > mid["non_contrast"]


def test_render_accepts_torch_tissue():
    tissue = torch.from_numpy(_blocks())
    image = render(tissue, [0.0, 0.5, 1.0], [0.0, 0.0, 0.0])
    assert image.dtype == torch.float32
    assert set(np.unique(image.numpy()).round(3)) == {0.0, 0.5, 1.0}
