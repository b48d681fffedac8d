"""medrecon.reconstruct on one stack: exact grids, data consistency, weights files, sidecar."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medrecon.superres import ReconstructError, SliceProfile  # noqa: E402
from medrecon.superres.api import reconstruct, write_reconstruction  # noqa: E402
from medrecon.superres.baselines import psnr  # noqa: E402
from medrecon.superres.consistency import project  # noqa: E402
from medrecon.superres.degrade import degrade_axis, simulate_stack, weight_matrix  # noqa: E402
from medrecon.superres.network import build_network  # noqa: E402
from medrecon.superres.pairs import upsample_axis  # noqa: E402
from medrecon.superres.stack import fine_grid, super_resolve  # noqa: E402
from medrecon.superres.weights import load_network, save_network  # noqa: E402
from medrecon.testing.shapes import random_ellipsoids as _shapes  # noqa: E402
from medrecon.volume import Volume  # noqa: E402


def _oblique_affine(spacing=(1.0, 1.0, 1.0)):
    rot, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    a = np.eye(4)
    a[:3, :3] = rot * np.asarray(spacing)
    a[:3, 3] = (-20.0, 7.5, 110.0)
    return a


def test_upsample_axis_equals_the_3d_spline_it_replaces():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    thick = rng.normal(size=(9, 7, 11)).astype(np.float32)
    centres = 1.5 + 4.0 * np.arange(9)
    out = upsample_axis(thick, 0, centres, 38, 1.0)
    pos = (np.arange(38) - 1.5) / 4.0
    coords = np.meshgrid(pos, np.arange(7), np.arange(11), indexing="ij")
    ref = ndimage.map_coordinates(thick, coords, order=3, mode="nearest")
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_projection_reproduces_the_slices_and_moves_towards_the_truth(kind):
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(6, 5, 60)).astype(np.float32)
    profile = SliceProfile(kind, 4.0, 4.0)
    centres = 10.0 + 4.0 * np.arange(11)  # every profile wholly inside the grid
    slices = degrade_axis(truth, 2, 1.0, profile, centres)
    guess = truth + rng.normal(scale=0.5, size=truth.shape).astype(np.float32)
    out = project(guess, slices, 2, profile, 1.0, centres, lam=1e-9)
    a = weight_matrix(profile, 1.0, 60, centres)
    np.testing.assert_allclose(out @ a.T, slices, atol=1e-3)
    # An orthogonal projection onto a set holding the truth can only shorten the error.
    assert np.linalg.norm(out - truth) < np.linalg.norm(guess - truth)


def _lps_affine(spacing):
    return np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])


def _permuted_affine(spacing):
    # Voxel axis 0 runs superior (RAS z), axis 1 along x, axis 2 posterior.
    a = np.zeros((4, 4))
    a[2, 0], a[0, 1], a[1, 2], a[3, 3] = spacing[0], spacing[1], -spacing[2], 1.0
    a[:3, 3] = (5.0, -3.0, 40.0)
    return a


@pytest.mark.parametrize(
    ("make", "axis"),
    [(_oblique_affine, 2), (_lps_affine, 2), (_permuted_affine, 0), (_permuted_affine, 2)],
)
def test_fine_grid_and_reconstruction_put_each_slice_centre_where_the_header_does(make, axis):
    spacing = [0.8, 0.8, 0.8]
    spacing[axis] = 4.0
    shape = [10, 12, 9]
    shape[axis] = 7
    rng = np.random.default_rng(4)
    stack = Volume(rng.normal(size=shape).astype(np.float32), make(spacing))
    grid = fine_grid(stack, axis, 0.8)
    assert grid.shape[axis] == 31
    r = reconstruct([stack], method="bspline")
    for k in range(7):
        fine = [2, 3, 4]
        fine[axis] = 5 * k
        src = [2, 3, 4]
        src[axis] = k
        np.testing.assert_allclose(grid.affine @ [*fine, 1], stack.affine @ [*src, 1], atol=1e-9)
        # The default output grid holds the source slice's centre plane, with its values.
        ijk = np.linalg.inv(r.volume.affine) @ stack.affine @ [*src, 1]
        np.testing.assert_allclose(ijk[:3], np.round(ijk[:3]), atol=1e-6)
        i, j, kk = np.round(ijk[:3]).astype(int)
        assert r.volume.array[i, j, kk] == pytest.approx(stack.array[tuple(src)], abs=1e-4)


def test_untrained_network_without_finetune_or_projection_is_the_bspline():
    rng = np.random.default_rng(2)
    stack = Volume(rng.normal(size=(12, 10, 6)).astype(np.float32), np.diag([1, 1, 3.0, 1]))
    res = super_resolve(stack, weights=None, finetune_steps=0, consistency=False)
    ref = upsample_axis(stack.array, 2, 3.0 * np.arange(6), 16, 1.0)
    np.testing.assert_allclose(res.volume.array, ref, atol=1e-5)
    assert res.factor == 3.0 and res.thick_axis == 2


def test_weights_file_round_trip_and_clear_errors(tmp_path):
    net = build_network(8, 3)
    torch.nn.init.normal_([m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1].weight)
    path = save_network(net, tmp_path / "w.pt", {"channels": 8, "layers": 3}, {"steps": 5})
    back, source = load_network(path)
    x = torch.randn(1, 1, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x))
    assert source == str(path)
    with pytest.raises(ReconstructError, match="not found"):
        load_network(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ReconstructError):
        load_network(tmp_path / "junk.pt")


def test_like_grid_is_reproduced_exactly_and_the_sidecar_says_what_was_done(tmp_path):
    truth = Volume(_shapes(40), _oblique_affine())
    stack = simulate_stack(truth, 2, SliceProfile("box", 4.0, 4.0), offset=1.0)
    r = reconstruct([stack], like=truth, weights=None, finetune_steps=20)
    assert r.volume.shape == truth.shape
    np.testing.assert_array_equal(r.volume.affine, truth.affine)
    nii, side = write_reconstruction(r, tmp_path / "out.nii.gz")
    img = nib.load(nii)
    assert img.shape == truth.shape
    np.testing.assert_allclose(img.affine, truth.affine, atol=1e-5)
    meta = json.loads(side.read_text())
    (entry,) = meta["stacks"]
    assert entry["factor"] == 4.0 and entry["thick_axis"] == 2
    assert entry["slice_profile"]["kind"] == "box"
    assert entry["slice_profile"]["thickness_mm"] == 4.0
    assert entry["finetune"]["steps"] == 20
    assert meta["output"]["shape"] == list(truth.shape)
    # The truth's first plane and its last three lie outside the slices' centres.
    assert 0.0 < meta["coverage"] < 1.0


def test_default_grid_is_isotropic_at_the_in_plane_spacing():
    stack = Volume(_shapes(32)[:, :, ::4].copy(), _oblique_affine((0.7, 0.7, 2.8)))
    r = reconstruct([stack], method="bspline")
    np.testing.assert_allclose(r.volume.spacing, 0.7, rtol=1e-6)
    assert r.volume.shape == (32, 32, 29)


def test_reconstruction_beats_bspline_on_a_shape_from_its_thick_slices():
    torch.manual_seed(0)
    truth = Volume(_shapes(48), np.eye(4))
    stack = simulate_stack(truth, 2, SliceProfile("box", 4.0, 4.0), offset=1.0)
    first, last = 1, 1 + 4 * (stack.shape[2] - 1)
    scores = {}
    for name, opts in (("bspline", {"method": "bspline"}), ("ours", {"weights": None})):
        out = reconstruct([stack], like=truth, finetune_steps=300, **opts).volume.array
        scores[name] = psnr(truth.array[..., first:last], out[..., first:last])
    assert scores["ours"] > scores["bspline"] + 1.0, scores


def test_bad_requests_are_refused_in_words():
    stack = Volume(np.zeros((8, 8, 8), np.float32), np.eye(4))
    with pytest.raises(ReconstructError, match="nothing to reconstruct"):
        reconstruct([stack], method="bspline")
    thick = Volume(np.zeros((8, 8, 4), np.float32), np.diag([1, 1, 4.0, 1]))
    with pytest.raises(ReconstructError, match="method"):
        reconstruct([thick], method="sinc")
    with pytest.raises(ReconstructError, match="not both"):
        reconstruct([thick], spacing=1.0, like=thick)
    with pytest.raises(ReconstructError, match="at least one"):
        reconstruct([])


def test_shipped_weights_load_pinned_and_describe_their_training():
    from medrecon.pipeline.weights import sha256_file
    from medrecon.superres.weights import DEFAULT_SHA256, default_weights_path

    path = default_weights_path()
    assert sha256_file(path) == DEFAULT_SHA256
    _, source = load_network("default")
    assert source == "pretrained"
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["trained"]["steps"] > 0 and "ct-abdomen" in saved["trained"]["volumes"]
    assert "mr-abdomen" not in saved["trained"]["volumes"]  # the benchmark's held-out volume
