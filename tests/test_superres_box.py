"""The network runs only on the foreground's box: known boxes, and inside it the same
result as over the whole plane; outside it the interpolation, untouched."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medrecon.superres.baselines import body_mask, foreground, foreground_box  # noqa: E402
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


def test_foreground_box_known_answers():
    a = np.full((30, 20, 5), -1000.0, np.float32)
    a[10:15, 3:9, 2] = 40.0
    assert foreground_box(a, "CT", (0, 1), 3) == (slice(7, 18), slice(0, 12), slice(None))
    assert foreground_box(a, "CT", (0, 1, 2), 0) == (slice(10, 15), slice(3, 9), slice(2, 3))
    # No foreground: the whole array, never an empty box.
    air = np.full((6, 6, 3), -1000.0, np.float32)
    assert foreground_box(air, "CT", (0, 1), 2) == (slice(None),) * 3


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
