"""MONAI bundles end to end: ``load_bundle`` -> the real segmentation engine and CLI.

Two bundles, written with :func:`test_bundle.make_bundle`:

* a *threshold* bundle whose ``network_def`` is a 1x1x1 ``torch.nn.Conv3d``
  with known weights: after the bundle's [0, 1000] -> [0, 1] intensity window,
  label 1 is 0.5 < x < 0.9 and label 2 is x > 0.9, so the expected label map
  and probabilities are known in closed form;
* the model-zoo-like UNet bundle of ``test_bundle`` (without its resampling
  step), compared with MONAI running the same bundle's own transforms,
  network and inferer.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from test_bundle import CONFIG, METADATA, make_bundle

from medrecon import Volume
from medrecon.cli.main import main
from medrecon.io.nifti import write_nifti
from medrecon.pipeline.bundle import load_bundle
from medrecon.pipeline.segment import Segmenter, segment

SHAPE = (40, 36, 30)
AFFINE = np.diag([-2.0, -2.0, 2.0, 1.0])
AFFINE[:3, 3] = (40.0, 36.0, -30.0)
#: Native voxel boxes: label 1 (window 0.60-0.85) and label 2 (window 0.95-1).
BOX_1 = (slice(5, 20), slice(8, 25), slice(4, 14))
BOX_2 = (slice(24, 34), slice(10, 20), slice(16, 26))

#: Conv3d(1, 3, 1): logits (0, 100 x - 50, 200 x - 140) for window-scaled x.
GAIN = np.array([0.0, 100.0, 200.0])
BIAS = np.array([0.0, -50.0, -140.0])

THRESHOLD_CONFIG: dict[str, Any] = {
    "image_key": "image",
    "network_def": {
        "_target_": "torch.nn.Conv3d",
        "in_channels": 1,
        "out_channels": 3,
        "kernel_size": 1,
    },
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key"},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {
                "_target_": "ScaleIntensityRanged",
                "keys": "@image_key",
                "a_min": 0,
                "a_max": 1000,
                "b_min": 0.0,
                "b_max": 1.0,
                "clip": True,
            },
            {"_target_": "EnsureTyped", "keys": "@image_key"},
        ],
    },
    # Smaller than the volume on two axes: several windows, and padding on the third.
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2},
}


def _metadata(channel_def: dict[str, str]) -> dict[str, Any]:
    metadata = copy.deepcopy(METADATA)
    pred = metadata["network_data_format"]["outputs"]["pred"]
    pred.update(channel_def=channel_def, num_channels=len(channel_def))
    return metadata


CHANNEL_DEF = {"0": "background", "1": "spleen", "2": "liver"}


def threshold_bundle(root: Path) -> Path:
    """The Conv3d threshold bundle, its weights set to GAIN/BIAS."""
    bundle = make_bundle(root, THRESHOLD_CONFIG, _metadata(CHANNEL_DEF), model=None)
    state = {
        "weight": torch.tensor(GAIN, dtype=torch.float32).reshape(3, 1, 1, 1, 1),
        "bias": torch.tensor(BIAS, dtype=torch.float32),
    }
    torch.save(state, bundle / "models" / "model.pt")
    return bundle


def phantom() -> tuple[Volume, np.ndarray]:
    """An int16 volume (background below the window's middle, two bright boxes) and
    the label map the threshold bundle must give for it."""
    rng = np.random.default_rng(7)
    array = rng.integers(-300, 400, SHAPE).astype(np.int16)  # window <= 0.4: background
    array[BOX_1] = rng.integers(600, 850, array[BOX_1].shape)
    array[BOX_2] = rng.integers(950, 1500, array[BOX_2].shape)  # clipped to 1.0
    expected = np.zeros(SHAPE, np.uint8)
    expected[BOX_1], expected[BOX_2] = 1, 2
    return Volume(array, AFFINE), expected


def test_threshold_bundle_gives_exactly_the_boxes(tmp_path: Path) -> None:
    volume, expected = phantom()
    pipeline = load_bundle(threshold_bundle(tmp_path / "threshold"), trust=True)
    seg = segment(volume, pipeline, device="cpu", probabilities=True)
    again = Segmenter(pipeline, device="cpu")(volume, probabilities=True)
    np.testing.assert_array_equal(again.labels.array, seg.labels.array)
    np.testing.assert_array_equal(again.probabilities.array, seg.probabilities.array)

    labels = seg.labels
    assert labels.shape == volume.shape and labels.array.dtype == np.uint8
    np.testing.assert_array_equal(labels.affine, volume.affine)
    np.testing.assert_array_equal(labels.array, expected)
    assert [(lab.value, lab.name) for lab in seg.label_table] == [(1, "spleen"), (2, "liver")]
    assert [lab.name for lab in seg.present_labels()] == ["spleen", "liver"]
    assert seg.device == "cpu" and seg.warnings == []

    # Probabilities: softmax of the known logits, voxel by voxel on the native grid.
    assert seg.probabilities is not None
    probs = seg.probabilities.array
    assert probs.shape == (*SHAPE, 3)
    np.testing.assert_array_equal(seg.probabilities.affine, volume.affine)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    x = np.clip(volume.array / 1000.0, 0.0, 1.0)[..., None]
    logits = GAIN * x + BIAS
    softmax = np.exp(logits - logits.max(axis=-1, keepdims=True))
    softmax /= softmax.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(probs, softmax, atol=1e-5)


def test_unet_bundle_matches_monai_running_the_bundle(tmp_path: Path) -> None:
    """Same bundle, run by MONAI itself (its own transforms, network and inferer):
    the same probabilities and labels on the native grid."""
    from monai.bundle import ConfigParser

    config = copy.deepcopy(CONFIG)
    steps = config["preprocessing"]["transforms"]
    # No Spacingd: the model grid is the native grid with axes 0 and 1 reversed
    # (LPS -> RAS), so MONAI's output maps back by a flip instead of a resampling.
    config["preprocessing"]["transforms"] = [s for s in steps if s["_target_"] != "Spacingd"]
    # Several overlapping windows with Gaussian blending, padded along the last axis.
    config["inferer"].update(roi_size=[32, 32, 32], overlap=0.5, mode="gaussian")
    bundle = make_bundle(tmp_path / "unet", config)
    volume, _ = phantom()
    volume = Volume((volume.array - 200).astype(np.int16), volume.affine)  # HU-like
    source = write_nifti(volume, tmp_path / "ct.nii.gz")

    first = segment(volume, load_bundle(bundle, trust=True), device="cpu", probabilities=True)
    np.testing.assert_array_equal(first.labels.affine, volume.affine)
    np.testing.assert_allclose(first.probabilities.array.sum(axis=-1), 1.0, atol=1e-5)
    assert set(np.unique(first.labels.array)) <= {0, 1, 2}

    parser = ConfigParser(copy.deepcopy(config))
    parser["bundle_root"] = str(bundle)
    image = parser.get_parsed_content("preprocessing")({"image": str(source)})["image"]
    np.testing.assert_allclose(image.affine.numpy()[:3, :3], np.diag([2.0, 2.0, 2.0]))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    with torch.no_grad():
        logits = parser.get_parsed_content("inferer")(image.as_tensor()[None], net.eval())
    reference = np.flip(torch.softmax(logits[0], 0).permute(1, 2, 3, 0).numpy(), (0, 1))
    np.testing.assert_allclose(first.probabilities.array, reference, atol=1e-5)
    # An untrained network has near-ties; compare labels where the argmax is clear.
    top = np.sort(reference, axis=-1)
    clear = top[..., -1] - top[..., -2] > 1e-4
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(first.labels.array[clear], reference.argmax(axis=-1)[clear])
    assert set(np.unique(first.labels.array[clear])) == {0, 1, 2}


@pytest.fixture
def nifti_and_bundle(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    volume, expected = phantom()
    source = write_nifti(volume, tmp_path / "ct.nii.gz")
    return source, threshold_bundle(tmp_path / "threshold bundle"), expected


def test_cli_segment_with_bundle(tmp_path: Path, nifti_and_bundle, capsys) -> None:
    source, bundle, expected = nifti_and_bundle
    out = tmp_path / "out" / "seg.nii.gz"
    args = ["segment", str(source), "-o", str(out), "--bundle", str(bundle), "--trust-bundle"]
    assert main([*args, "--device", "cpu"]) == 0
    assert "labels found: spleen, liver (device cpu;" in capsys.readouterr().out
    img = nib.load(out)
    np.testing.assert_array_equal(np.asarray(img.dataobj), expected)
    np.testing.assert_allclose(img.affine, AFFINE)
    assert int(img.header["sform_code"]) == 1
    table = (tmp_path / "out" / "seg.ctbl").read_text().splitlines()
    names = [line.split()[1] for line in table if not line.startswith("#")]
    assert names == ["background", "spleen", "liver"]


def test_cli_bundle_needs_trust(tmp_path: Path, nifti_and_bundle, capsys) -> None:
    source, bundle, _ = nifti_and_bundle
    out = tmp_path / "seg.nii.gz"
    args = ["segment", str(source), "-o", str(out), "--bundle", str(bundle), "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "medrecon segment: error:" in err and "--trust-bundle" in err
    assert "bundle configs can run arbitrary Python" in err
    assert not out.exists() and not (tmp_path / "seg.ctbl").exists()


def test_cli_bundle_and_pipeline_are_exclusive(tmp_path: Path, nifti_and_bundle, capsys) -> None:
    source, bundle, _ = nifti_and_bundle
    args = ["segment", str(source), "-o", str(tmp_path / "seg.nii.gz"), "--bundle", str(bundle)]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--pipeline", "abdomen", "--trust-bundle"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
