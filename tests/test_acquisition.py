"""Field of view, slice thickness, bias field and the whole patch chain, with known
answers on synthetic volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.train import acquisition as acq
from medrecon.train.augment import AugmentConfig, ModelSpace, build_patch_chain
from medrecon.train.prepare import IGNORE

GRID = (3.0, 3.0, 3.0)


def _patch(shape=(32, 32, 40)):
    gen = torch.Generator().manual_seed(0)
    image = torch.rand((1, *shape), generator=gen)
    label = (torch.rand((1, *shape), generator=gen) * 4).to(torch.uint8)
    return {"image": image, "label": label}


def _run(transform, data, seed=0):
    transform.set_random_state(seed=seed)
    return transform(dict(data))


def test_axial_slab_keeps_image_and_labels_aligned_to_the_voxel():
    data = _patch()
    fov = acq.rand_field_of_view(1.0, (30.0, 30.0), 0.0, 1.0, GRID)
    out = _run(fov, data)
    kept = (out["label"][0] != IGNORE).any(dim=(0, 1))
    z = torch.nonzero(kept)[:, 0]
    assert len(z) == 10  # 30 mm at 3 mm
    assert (z.diff() == 1).all()  # one contiguous slab
    inside = slice(int(z[0]), int(z[-1]) + 1)
    assert torch.equal(out["image"][..., inside], data["image"][..., inside])
    assert torch.equal(out["label"][..., inside], data["label"][..., inside])
    outside = torch.ones(40, dtype=torch.bool)
    outside[inside] = False
    assert (out["label"][..., outside] == IGNORE).all()
    assert (out["image"][..., outside] == out["image"][..., inside].min()).all()


def test_slab_positions_cover_the_whole_patch_and_inplane_crops_cut_borders():
    data = _patch()
    fov = acq.rand_field_of_view(1.0, (10.0, 60.0), 0.0, 1.0, GRID)
    starts = set()
    for seed in range(60):
        kept = (_run(fov, data, seed)["label"][0] != IGNORE).any(dim=(0, 1))
        z = torch.nonzero(kept)[:, 0]
        assert 3 <= len(z) <= 20
        starts.add(int(z[0]))
    assert min(starts) == 0 and max(starts) > 25  # organs may be cut at either border
    crop = acq.rand_field_of_view(0.0, (10.0, 60.0), 1.0, 0.5, GRID)
    out = _run(crop, data, 3)
    kept = out["label"][0] != IGNORE
    assert kept.any(dim=(1, 2)).sum() >= 16 and kept.any(dim=(0, 2)).sum() >= 16
    assert kept.any(dim=(0, 1)).all()  # the axial axis is untouched


def test_scan_end_shifts_the_patch_and_fills_beyond_the_cut():
    data = _patch()
    data["tissue"] = data["label"].clone()
    end = acq.rand_scan_end(1.0, 0.5, axial_axis=2)
    seen = {True: 0, False: 0}
    for seed in range(40):
        out = _run(end, data, seed)
        kept = (out["label"][0] != IGNORE).any(dim=(0, 1))
        z = torch.nonzero(kept)[:, 0]
        shift = 40 - len(z)
        assert 1 <= shift <= 20 and (z.diff() == 1).all()
        up = int(z[0]) > 0  # content moved to higher indices, fill below it
        seen[up] += 1
        src = slice(0, 40 - shift) if up else slice(shift, 40)
        dst = slice(int(z[0]), int(z[-1]) + 1)
        for key in ("image", "label", "tissue"):  # moved together, voxel for voxel
            assert torch.equal(out[key][..., dst], data[key][..., src])
        gone = torch.ones(40, dtype=torch.bool)
        gone[dst] = False
        assert (out["image"][..., gone] == data["image"].min()).all()
        assert (out["label"][..., gone] == IGNORE).all()
    assert seen[True] > 5 and seen[False] > 5  # the scan ends above and below
    unchanged = _run(acq.rand_scan_end(0.0, 0.5), data)
    assert torch.equal(unchanged["image"], data["image"])


def test_thick_slices_blur_through_plane_only():
    x = torch.linspace(0, 1, 32)
    # Varies only in-plane: an axial acquisition of any thickness leaves it as it is.
    inplane = x.view(1, 32, 1, 1).expand(1, 32, 32, 40).contiguous()
    thick = acq.rand_slice_thickness(1.0, (6.0, 6.0), 0.0, (1.0, 1.0), GRID)
    out = _run(thick, {"image": inplane})
    torch.testing.assert_close(out["image"], inplane, atol=1e-5, rtol=0)
    # A step along z is smeared over about the slice thickness, symmetrically.
    step = torch.zeros(1, 8, 8, 40)
    step[..., 20:] = 1.0
    out = _run(thick, {"image": step})["image"][0, 4, 4]
    assert 0.05 < out[19] < 0.95 and 0.05 < out[20] < 0.95
    assert out[:14].max() < 0.05 and out[26:].min() > 0.95
    # A constant image stays constant.
    const = torch.full((1, 8, 8, 40), 0.3)
    torch.testing.assert_close(_run(thick, {"image": const})["image"], const)


def test_slices_at_the_model_spacing_change_nothing():
    data = _patch()
    same = acq.rand_slice_thickness(1.0, (3.0, 3.0), 0.0, (1.0, 1.0), GRID)
    # Thickness 0.7-1.3 x 3 mm: at most a faint blur, never a resampling.
    out = _run(same, data)["image"]
    assert (out - data["image"]).abs().mean() < 0.1


def test_bias_field_scales_tissue_around_the_floor():
    image = torch.full((1, 16, 16, 16), 0.5)
    image[..., :4] = 0.0  # air
    bias = acq.rand_bias_field(1.0, 1.0, 0.3, 4)
    out = _run(bias, {"image": image})["image"]
    assert (out[..., :4] == 0).all()
    ratio = out[..., 4:] / 0.5
    assert ratio.min() > np.exp(-4 * 0.3) and ratio.max() < np.exp(4 * 0.3)
    assert ratio.std() > 1e-4
    # Smooth: a step between neighbours is a small part of the field's whole range.
    spread = float(ratio.max() - ratio.min())
    for axis in (1, 2, 3):
        assert ratio.diff(dim=axis).abs().max() < 0.5 * spread


def test_contrast_phase_shifts_real_ct_not_synthetic():
    tissue = torch.zeros((1, 10, 10, 10), dtype=torch.uint8)
    tissue[..., :5] = 5
    image = torch.full((1, 10, 10, 10), (40 + 200) / 500)
    data = {"image": image, "tissue": tissue, "phase_groups": {"liver": (5,)}}
    phase = acq.rand_contrast_phase(1.0, ("portal_venous",), (-200.0, 300.0))
    out = _run(phase, data)["image"]
    liver_hu = float(out[..., :5].mean()) * 500 - 200
    assert 95 <= liver_hu <= 130
    assert torch.equal(out[..., 5:], image[..., 5:])
    synthetic = _run(phase, {**data, "synthetic": True})["image"]
    assert torch.equal(synthetic, image)


def _case():
    rng = np.random.default_rng(0)
    label = np.zeros((1, 40, 40, 40), dtype=np.uint8)
    label[0, 10:20, 10:30, 10:30] = 1
    label[0, 22:32, 10:30, 10:30] = 2
    tissue = label.copy()
    tissue[label == 0] = 241
    tissue[0, :4] = 0
    image = (0.2 + 0.3 * label + rng.normal(0, 0.02, label.shape)).astype(np.float32)
    from monai import transforms as mt

    keys = ["image", "label", "tissue"]
    cached = mt.Compose(
        [
            mt.EnsureTyped(keys=keys, track_meta=False),
            mt.SpatialPadd(keys=keys, spatial_size=(48, 48, 48)),
            mt.ClassesToIndicesd(keys="label", num_classes=3),
        ]
    )
    return cached({"image": image, "label": label, "tissue": tissue, "phase_groups": {}})


def test_full_chain_gives_valid_reproducible_patches():
    config = AugmentConfig(
        margin=4,
        synth_prob=0.5,
        phase_prob=0.5,
        scan_end_prob=0.5,
        fov_prob=0.5,
        inplane_crop_prob=0.3,
        thick_prob=0.5,
        coarse_inplane_prob=0.3,
        bias_prob=0.5,
        bias_real_prob=0.2,
    )
    space = ModelSpace(spacing=GRID, window=(-200.0, 300.0), clip=(0.0, 1.0))
    chain = build_patch_chain(config, (32, 32, 32), 3, [], space)
    item = _case()
    synthetic = 0
    for seed in range(12):
        chain.set_random_state(seed=seed)
        out = chain(dict(item))
        out = out[0] if isinstance(out, list) else out
        assert out["image"].shape == (1, 32, 32, 32) and out["label"].shape == (1, 32, 32, 32)
        assert out["image"].min() >= 0 and out["image"].max() <= 1
        assert set(np.unique(out["label"].numpy())) <= {0, 1, 2, IGNORE}
        synthetic += bool(out["synthetic"])
        chain.set_random_state(seed=seed)
        again = chain(dict(item))
        again = again[0] if isinstance(again, list) else again
        assert torch.equal(out["image"], again["image"])
    assert 0 < synthetic < 12


def test_synthetic_patch_keeps_labels_on_their_structures():
    config = AugmentConfig(margin=0, affine_prob=0.0, elastic_prob=0.0, synth_prob=1.0)
    for prob in ("gamma_prob", "contrast_prob", "brightness_prob", "noise_prob", "blur_prob"):
        config = type(config)(**{**config.__dict__, prob: 0.0})
    chain = build_patch_chain(config, (40, 40, 40), 3, [], ModelSpace(clip=(0.0, 1.0)))
    item = _case()
    chain.set_random_state(seed=5)
    out = chain(dict(item))
    out = out[0] if isinstance(out, list) else out
    image, label = out["image"][0].numpy(), out["label"][0].numpy()
    # Each labelled structure is one intensity class: its voxels are far tighter
    # than the image as a whole, and the two organs differ.
    for value in (1, 2):
        assert image[label == value].std() < 0.15
    assert abs(image[label == 1].mean() - image[label == 2].mean()) > 1e-3


def test_bad_augmentation_values_are_refused():
    with pytest.raises(InputError, match="synth_prob"):
        AugmentConfig.from_mapping({"synth_prob": 1.5})
    with pytest.raises(InputError, match="unknown contrast phases"):
        AugmentConfig.from_mapping({"phases": ["venous"]})
    with pytest.raises(InputError, match="fov_mm"):
        AugmentConfig.from_mapping({"fov_mm": [50, 10]})
    with pytest.raises(InputError, match="scan_end_max"):
        AugmentConfig.from_mapping({"scan_end_max": 1.0})
    with pytest.raises(InputError, match="unknown augmentation keys"):
        AugmentConfig.from_mapping({"synthesis": 1})


@pytest.mark.parametrize("name", ["abdomen.dataset.yaml", "abdomen-continue.dataset.yaml"])
def test_shipped_model_recipes_parse(shared_data, name):
    """The two cohort files behind the shipped weights (docs/models.md) still load."""
    from pathlib import Path

    from medrecon.train.dataset import read_cohort

    cohort = read_cohort(Path(__file__).resolve().parents[1] / "scripts" / name)
    config = AugmentConfig.from_mapping(cohort.augment, name)
    assert len(cohort.cases) == 1 and config.synth_prob == 0.75
    assert config.scan_end_prob == (0.4 if "continue" in name else 0.0)
