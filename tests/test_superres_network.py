"""The small network: identity at start, FLOPs counted, and a fine-tune that beats B-spline."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medrecon.superres import SliceProfile, profile_from_volume  # noqa: E402
from medrecon.superres.baselines import interpolate, psnr  # noqa: E402
from medrecon.superres.degrade import simulate_stack  # noqa: E402
from medrecon.superres.grid import like_grid  # noqa: E402
from medrecon.superres.network import (  # noqa: E402
    apply_views,
    build_network,
    fine_tune,
    flops_per_pixel,
)
from medrecon.superres.pairs import make_pairs  # noqa: E402
from medrecon.testing.shapes import random_ellipsoids  # noqa: E402
from medrecon.volume import Volume  # noqa: E402


def _shapes(n=48, seed=0):
    return random_ellipsoids(n, seed)


def test_untrained_network_is_the_identity_and_flops_are_counted():
    net = build_network(16, 4)
    x = torch.randn(2, 1, 20, 24)
    with torch.no_grad():
        assert torch.equal(net(x), x)
    assert flops_per_pixel(net) == 2 * 9 * (16 + 16 * 16 * 2 + 16)


def test_dilations_widen_the_receptive_field_at_the_same_cost():
    """An impulse reaches 1 + 2 * sum(dilations) pixels: 9 for four plain layers, 17
    with dilations 1, 2, 4, 1; the FLOPs stay those of the plain network."""

    def reach(net) -> int:
        for m in net.modules():  # positive weights, no bias: only the impulse's paths show
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.constant_(m.weight, 0.1)
                torch.nn.init.zeros_(m.bias)
        x = torch.zeros(1, 1, 41, 41)
        x[0, 0, 20, 20] = 1.0
        with torch.no_grad():
            row = (net(x) - x)[0, 0, 20].abs() > 0
        return int(row.sum())

    assert reach(build_network(16, 4)) == 9
    wide = build_network(16, 4, dilations=[1, 2, 4, 1])
    assert reach(wide) == 17
    assert flops_per_pixel(wide) == flops_per_pixel(build_network(16, 4))
    with pytest.raises(ValueError, match="one integer >= 1 per layer"):
        build_network(16, 4, dilations=[1, 2])
    with pytest.raises(ValueError, match="one integer >= 1 per layer"):
        build_network(16, 4, dilations=[1, 0, 1, 1])


def test_fine_tuned_network_beats_bspline_on_a_shape_from_its_thick_slices():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    truth = Volume(_shapes(), np.eye(4))
    stack = simulate_stack(truth, 2, SliceProfile("box", 4.0, 4.0))
    profile, axis, _ = profile_from_volume(stack)
    grid = like_grid(truth)
    bspline = interpolate(stack, grid, "bspline").array
    pairs = make_pairs(stack, profile, axis, patch=32, n=256, seed=0)
    net = build_network(16, 4)
    report = fine_tune(net, pairs, steps=300, batch=16, lr=2e-3)
    assert report.final_mse < np.mean((pairs.inputs - pairs.targets) ** 2)
    ours = apply_views(net, bspline, axis, pairs.scale)
    # Compare where the stack has data on both sides (not beyond its first/last centre).
    mask = np.zeros(truth.shape, bool)
    mask[:, :, 4:-4] = True
    gain = psnr(truth.array, ours, mask) - psnr(truth.array, bspline, mask)
    assert gain > 0.5, f"network gains only {gain:.2f} dB over cubic B-spline"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_apply_views_of_an_untrained_network_returns_its_input(axis):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 10, 11)).astype(np.float32) * 50 + 100
    out = apply_views(build_network(8, 3), x, axis, (0.0, 200.0), batch=4)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-4)


def test_bf16_views_match_fp32_within_the_correction_precision():
    from medrecon.pipeline.device import bf16_supported

    if not bf16_supported("cpu"):
        pytest.skip("this CPU has no native bfloat16")
    torch.manual_seed(0)
    net = build_network(16, 4)
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.normal_(last.weight, std=0.05)
    x = random_ellipsoids(32, 1)
    full = apply_views(net, x, 2, (0.0, 1.0), bf16=False)
    fast = apply_views(net, x, 2, (0.0, 1.0), bf16=True)
    correction = np.abs(full - x).max()
    assert correction > 0.05  # the network does change the image
    # The input passes in fp32; only the correction carries bfloat16's 8-bit mantissa.
    assert np.abs(fast - full).max() < 0.02 * correction + 1e-6
