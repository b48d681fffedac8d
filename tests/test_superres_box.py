"""The network runs only on the foreground's footprint: known footprints and boxes, and
on the tissue the same result as over the whole plane; elsewhere the interpolation,
untouched."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medrecon.superres.baselines import (  # noqa: E402
    body_mask,
    footprint_box,
    foreground,
    foreground_footprint,
)
from medrecon.superres.network import apply_views  # noqa: E402
from medrecon.superres.pairs import intensity_scale, upsample_axis  # noqa: E402
from medrecon.superres.stack import NETWORK_MARGIN, super_resolve  # noqa: E402
from medrecon.superres.weights import load_network  # noqa: E402
from medrecon.volume import Volume, VolumeMeta  # noqa: E402


def _ct_stack(shape=(72, 60, 8), box=(slice(20, 44), slice(12, 40))):
    """Air around a textured 'body' in-plane; thick along axis 2 (4 mm)."""
    rng = np.random.default_rng(5)
    a = np.full(shape, -1000.0, np.float32) + rng.normal(0, 10, shape).astype(np.float32)
    body = rng.normal(40, 60, (box[0].stop - box[0].start, box[1].stop - box[1].start, shape[2]))
    a[box[0], box[1], :] = body.astype(np.float32)
    return Volume(a, np.diag([1.0, 1.0, 4.0, 1.0]), VolumeMeta(modality="CT"))


def test_footprint_and_box_known_answers():
    a = np.full((30, 20, 5), -1000.0, np.float32)
    a[10:15, 3:9, 2] = 40.0
    foot = foreground_footprint(a, "CT", 2, 3)
    expect = np.zeros((30, 20), bool)
    expect[7:18, 0:12] = True
    np.testing.assert_array_equal(foot, expect)
    assert footprint_box(foot, 2) == (slice(7, 18), slice(0, 12), slice(None))
    # Thick along axis 0: the footprint is over axes 1 and 2.
    foot0 = foreground_footprint(a, "CT", 0, 1)
    assert foot0.shape == (20, 5) and foot0[2:10, 1:4].all() and foot0.sum() == 8 * 3
    assert footprint_box(foot0, 0) == (slice(None), slice(2, 10), slice(1, 4))
    # No foreground: everything, never an empty footprint.
    air = np.full((6, 6, 3), -1000.0, np.float32)
    assert foreground_footprint(air, "CT", 2, 2).all()


def test_generous_foreground_keeps_dim_tissue_the_body_mask_drops():
    # MR-like: background 0, bright fat 100, tissue far from the coil at 30.
    a = np.zeros((40, 40, 4), np.float32)
    a[5:20, 5:35] = 100.0
    a[20:35, 5:35] = 30.0
    strict = foreground(a, "MR")
    generous = foreground(a, "MR", generous=True)
    assert not strict[25, 20, 0] and generous[25, 20, 0]
    assert generous[10, 10, 0] and not generous[38, 38, 0]
    assert body_mask(a, "MR").sum() <= generous.sum()


def test_network_inside_the_box_equals_the_full_plane_and_leaves_air_alone():
    stack = _ct_stack()
    res = super_resolve(stack, finetune_steps=0, consistency=False)
    m = NETWORK_MARGIN
    assert res.network_box == [[20 - m, 44 + m], [12 - m, 40 + m], [0, 29]]
    array = stack.array
    up = upsample_axis(array, 2, 4.0 * np.arange(8), 29, 1.0, order=3)
    net, _ = load_network("default")
    with torch.inference_mode():
        full = apply_views(net, up, 2, intensity_scale(array))
    out = res.volume.array
    # Tissue and the margin's inner half: as if the network had seen the whole plane.
    inner = (slice(20 - m // 2, 44 + m // 2), slice(12 - m // 2, 40 + m // 2))
    np.testing.assert_allclose(out[inner], full[inner], atol=1e-3)
    # The pretrained network does change the tissue (this is not the identity).
    assert np.abs(full[20:44, 12:40] - up[20:44, 12:40]).max() > 1.0
    # Outside the box: the interpolation, exactly.
    outside = np.ones(out.shape, bool)
    outside[20 - m : 44 + m, 12 - m : 40 + m] = False
    np.testing.assert_array_equal(out[outside], up[outside])


def test_each_plane_runs_only_over_its_footprint():
    # A diagonal band of tissue: the box is the whole plane, each plane's run is short.
    rng = np.random.default_rng(2)
    n, m = 96, NETWORK_MARGIN
    a = np.full((n, n, 8), -1000.0, np.float32) + rng.normal(0, 10, (n, n, 8)).astype(np.float32)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    band = np.abs(i - j) < 6
    a[band] = rng.normal(40, 60, (int(band.sum()), 8)).astype(np.float32)
    stack = Volume(a, np.diag([1.0, 1.0, 4.0, 1.0]), VolumeMeta(modality="CT"))
    res = super_resolve(stack, finetune_steps=0, consistency=False)
    assert res.network_box == [[0, n], [0, n], [0, 29]]
    up = upsample_axis(a, 2, 4.0 * np.arange(8), 29, 1.0, order=3)
    net, _ = load_network("default")
    with torch.inference_mode():
        full = apply_views(net, up, 2, intensity_scale(a))
    out = res.volume.array
    near = np.abs(i - j) < 6 + m // 2
    np.testing.assert_allclose(out[near], full[near], atol=1e-3)
    # Far from the band: past the square margin (up to 2m off the diagonal) and the
    # 8-pixel rounding of each run.
    far = np.abs(i - j) > 5 + 2 * m + 8
    np.testing.assert_array_equal(out[far], up[far])
