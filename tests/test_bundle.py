"""MONAI bundles -> Pipeline: trust gate, field mapping, lazy network, clear refusals.

The bundles are small stand-ins written to tmp_path, laid out like the model
zoo's ``spleen_ct_segmentation`` (references, ``$`` expressions, a Compose).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from monai.networks.nets import UNet

from medrecon.errors import PipelineError
from medrecon.pipeline.bundle import TRUST_FLAG, load_bundle
from medrecon.pipeline.config import CT_WINDOW, PERCENTILE, ZSCORE

NET_ARGS: dict[str, Any] = {
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "channels": [4, 8],
    "strides": [2],
    "num_res_units": 1,
    "norm": "batch",
}

CONFIG: dict[str, Any] = {
    "imports": ["$import glob", "$import os"],
    "bundle_root": ".",
    "image_key": "image",
    "output_dir": "$@bundle_root + '/eval'",
    "datalist": "$list(sorted(glob.glob(@bundle_root + '/imagesTs/*.nii.gz')))",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": {"_target_": "UNet", **NET_ARGS},
    "network": "$@network_def.to(@device)",
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key"},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {
                "_target_": "Spacingd",
                "keys": "@image_key",
                "pixdim": [1.5, 1.5, 2.0],
                "mode": "bilinear",
            },
            {
                "_target_": "ScaleIntensityRanged",
                "keys": "@image_key",
                "a_min": -57,
                "a_max": 164,
                "b_min": 0,
                "b_max": 1,
                "clip": True,
            },
            {"_target_": "EnsureTyped", "keys": "@image_key"},
        ],
    },
    "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]"},
    "inferer": {
        "_target_": "SlidingWindowInferer",
        "roi_size": [96, 96, 96],
        "sw_batch_size": 4,
        "overlap": 0.5,
    },
    "postprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing"},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        ],
    },
    "evaluator": {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "network": "@network",
        "inferer": "@inferer",
    },
    "run": ["$@evaluator.run()"],
}

METADATA: dict[str, Any] = {
    "version": "0.5.3",
    "name": "Test abdomen CT segmentation",
    "description": "A tiny stand-in for a model-zoo bundle",
    "network_data_format": {
        "inputs": {
            "image": {
                "type": "image",
                "format": "hounsfield",
                "modality": "CT",
                "num_channels": 1,
                "spatial_shape": [96, 96, 96],
            }
        },
        "outputs": {
            "pred": {
                "type": "image",
                "format": "segmentation",
                "num_channels": 3,
                "channel_def": {"0": "background", "1": "spleen", "2": "Left Kidney"},
            }
        },
    },
}


def make_bundle(
    root: Path,
    config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    fmt: str = "json",
    model: str | None = "model.pt",
) -> Path:
    """Write a bundle folder: configs, metadata and (optionally) weights."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = copy.deepcopy(CONFIG if config is None else config)
    text = json.dumps(config, indent=2) if fmt == "json" else yaml.safe_dump(config)
    (root / "configs" / f"inference.{fmt}").write_text(text)
    meta = METADATA if metadata is None else metadata
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    if model == "model.pt":
        torch.manual_seed(0)
        torch.save(UNet(**NET_ARGS).state_dict(), root / "models" / "model.pt")
    elif model is not None:
        (root / "models" / model).write_bytes(b"not a real model")
    return root


def with_steps(*steps: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    config["preprocessing"]["transforms"] = [{"_target_": "LoadImaged", "keys": "image"}, *steps]
    return config


def test_refused_without_trust_and_nothing_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "ran"
    config = with_steps({"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"})
    config["preprocessing"]["transforms"][1]["keys"] = f"$open(r'{sentinel}', 'w').close() or 'i'"
    bundle = make_bundle(tmp_path / "spleen", config)
    with pytest.raises(PipelineError, match="arbitrary Python") as err:
        load_bundle(bundle)
    assert TRUST_FLAG in str(err.value)
    assert "inference.json" in str(err.value)
    assert not sentinel.exists()
    load_bundle(bundle, trust=True)  # the same expression runs once trusted
    assert sentinel.exists()


def test_maps_every_field(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "spleen_ct_segmentation")
    pipe = load_bundle(bundle, trust=True)
    assert pipe.name == "Test abdomen CT segmentation"
    assert pipe.version == "0.5.3"
    assert pipe.description == "A tiny stand-in for a model-zoo bundle"
    assert pipe.modality == "CT"
    assert pipe.source == bundle.resolve() / "configs" / "inference.json"
    assert pipe.refine == () and pipe.coarse is None
    spleen, kidney = pipe.labels
    assert (spleen.value, spleen.name, spleen.type.value) == (1, "spleen", "78961009")
    assert (kidney.value, kidney.name, kidney.type.value) == (2, "Left Kidney", "64033007")
    assert kidney.type_modifier.meaning == "Left"
    pre = pipe.preprocess
    assert (pre.orientation, pre.spacing, pre.crop_foreground) == ("RAS", (1.5, 1.5, 2.0), False)
    assert pre.intensity.mode == CT_WINDOW
    assert (pre.intensity.window, pre.intensity.clip) == ((-57.0, 164.0), True)
    inf = pipe.inference
    assert (inf.roi_size, inf.sw_batch_size, inf.overlap) == ((96, 96, 96), 4, 0.5)
    # MONAI's SlidingWindowInferer defaults, not medrecon's
    assert (inf.blend, inf.sigma_scale) == ("constant", 0.125)
    assert pipe.network.name == "bundle:Test abdomen CT segmentation"
    assert pipe.network.args == {"out_channels": 3, "in_channels": 1}
    assert pipe.weights is not None and pipe.weights.sha256 is None
    assert pipe.weights.path == bundle.resolve() / "models" / "model.pt"


def test_factory_builds_network_that_takes_the_weights(tmp_path: Path) -> None:
    pipe = load_bundle(make_bundle(tmp_path / "b"), trust=True)
    assert pipe.network.factory is not None
    net = pipe.network.factory()
    state = torch.load(pipe.weights.path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 1, 16, 16, 16))
    assert out.shape == (1, 3, 16, 16, 16)
    assert pipe.network.factory() is not net  # a fresh module per call


def test_network_is_built_only_by_the_factory(tmp_path: Path) -> None:
    config = copy.deepcopy(CONFIG)
    config["network_def"]["_target_"] = "NoSuchNetworkAnywhere"
    pipe = load_bundle(make_bundle(tmp_path / "b", config), trust=True)
    with pytest.raises(PipelineError, match="building `network_def` failed"):
        pipe.network.factory()


@pytest.mark.parametrize("fmt", ["yaml", "yml"])
def test_yaml_config(tmp_path: Path, fmt: str) -> None:
    pipe = load_bundle(make_bundle(tmp_path / "b", fmt=fmt), trust=True)
    assert pipe.source.name == f"inference.{fmt}"
    assert pipe.preprocess.spacing == (1.5, 1.5, 2.0)
    assert pipe.network.factory().__class__.__name__ == "UNet"


def test_references_and_expressions_are_resolved(tmp_path: Path) -> None:
    config = copy.deepcopy(CONFIG)
    config["displayable_configs"] = {"highres": True, "sw_overlap": 0.25}
    config["pixdim"] = "$[1.5, 1.5, 1.5] if @displayable_configs#highres else [3.0, 3.0, 3.0]"
    config["window"] = [-1000, 1000]
    steps = config["preprocessing"]["transforms"]
    steps[3]["pixdim"] = "@pixdim"
    steps[4].update({"keys": "$@image_key", "a_min": "$@window[0]", "a_max": "@window#1"})
    config["base_transforms"] = steps
    config["preprocessing"]["transforms"] = "$@base_transforms"
    config["inferer"].update({"overlap": "@displayable_configs#sw_overlap", "mode": "gaussian"})
    pipe = load_bundle(make_bundle(tmp_path / "b", config), trust=True)
    assert pipe.preprocess.spacing == (1.5, 1.5, 1.5)
    assert pipe.preprocess.intensity.window == (-1000.0, 1000.0)
    assert (pipe.inference.overlap, pipe.inference.blend) == (0.25, "gaussian")


def test_zscore_crop_and_disabled_steps(tmp_path: Path) -> None:
    config = with_steps(
        {"_target_": "monai.transforms.CropForegroundd", "keys": "image", "margin": 8},
        {"_target_": "NormalizeIntensityD", "keys": "image", "nonzero": True},
        {"_target_": "RandFlipd", "keys": "image", "_disabled_": True},
    )
    metadata = copy.deepcopy(METADATA)
    del metadata["network_data_format"]["inputs"]["image"]["modality"]
    pipe = load_bundle(make_bundle(tmp_path / "b", config, metadata), trust=True)
    pre = pipe.preprocess
    assert (pre.crop_foreground, pre.crop_margin, pre.spacing) == (True, 8, None)
    assert (pre.intensity.mode, pre.intensity.nonzero) == (ZSCORE, True)
    assert pipe.modality == "MR"  # no declared modality and no HU window


def test_percentile_mapping(tmp_path: Path) -> None:
    step = {
        "_target_": "ScaleIntensityRangePercentilesd",
        "keys": "image",
        "lower": 1,
        "upper": 99,
        "b_min": 0.0,
        "b_max": 1.0,
        "clip": True,
    }
    pipe = load_bundle(make_bundle(tmp_path / "b", with_steps(step)), trust=True)
    intensity = pipe.preprocess.intensity
    assert (intensity.mode, intensity.lower, intensity.upper, intensity.clip) == (
        PERCENTILE,
        1.0,
        99.0,
        True,
    )


def test_modality_falls_back_to_hounsfield_window(tmp_path: Path) -> None:
    metadata = copy.deepcopy(METADATA)
    del metadata["network_data_format"]["inputs"]["image"]["modality"]
    assert load_bundle(make_bundle(tmp_path / "b", metadata=metadata), trust=True).modality == "CT"


def test_missing_inferer_uses_metadata_patch_size(tmp_path: Path) -> None:
    config = copy.deepcopy(CONFIG)
    del config["inferer"], config["evaluator"]
    metadata = copy.deepcopy(METADATA)
    metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] = [64, 64, 32]
    pipe = load_bundle(make_bundle(tmp_path / "a", config, metadata), trust=True)
    assert pipe.inference.roi_size == (64, 64, 32)
    del metadata["network_data_format"]["inputs"]["image"]["spatial_shape"]
    with pytest.raises(PipelineError, match=r"no `inferer` section.*roi_size"):
        load_bundle(make_bundle(tmp_path / "b", config, metadata), trust=True)


def test_bundle_folder_can_be_named_by_its_config_or_parent(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "download" / "spleen_ct_segmentation")
    config_file = bundle / "configs" / "inference.json"
    assert load_bundle(config_file, trust=True).source == config_file.resolve()
    assert load_bundle(tmp_path / "download", trust=True).source == config_file.resolve()


def _refusal(tmp_path: Path, **kwargs: Any) -> str:
    with pytest.raises(PipelineError) as err:
        load_bundle(make_bundle(tmp_path / "b", **kwargs), trust=True)
    return str(err.value)


def test_missing_config(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "configs" / "inference.json").unlink()
    with pytest.raises(PipelineError, match=r"no inference config; expected one of inference\."):
        load_bundle(bundle)


def test_missing_model(tmp_path: Path) -> None:
    message = _refusal(tmp_path, model=None)
    assert "model.pt" in message and "missing" in message


def test_torchscript_only_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, model="model.ts")
    assert "TorchScript" in message and "models/model.pt" in message


def test_unmappable_transform_is_refused(tmp_path: Path) -> None:
    step = {"_target_": "ScaleIntensityd", "keys": "image", "minv": -1.0, "maxv": 1.0}
    message = _refusal(tmp_path, config=with_steps(step))
    assert "step 1 `ScaleIntensityd` cannot be mapped" in message
    assert "NormalizeIntensityd" in message  # lists what is supported


def test_scaled_output_range_is_refused(tmp_path: Path) -> None:
    step = {"_target_": "ScaleIntensityRanged", "a_min": -100, "a_max": 200}
    step.update({"b_min": -1, "b_max": 1})
    message = _refusal(tmp_path, config=with_steps(step))
    assert "[b_min, b_max] = [-1, 1]" in message


def test_one_sided_clip_is_refused(tmp_path: Path) -> None:
    """MONAI clips only at the given bound (or fails with none); medrecon cannot copy that."""
    step = {"_target_": "ScaleIntensityRanged", "a_min": 0, "a_max": 1000, "b_max": 1.0}
    message = _refusal(tmp_path / "one", config=with_steps({**step, "clip": True}))
    assert "one-sided or undefined clip" in message
    step = {"_target_": "ScaleIntensityRanged", "a_min": 0, "a_max": 1000, "clip": True}
    assert "one-sided or undefined clip" in _refusal(tmp_path / "none", config=with_steps(step))


def test_second_intensity_step_is_refused(tmp_path: Path) -> None:
    config = with_steps(
        {"_target_": "NormalizeIntensityd", "keys": "image"},
        {"_target_": "ScaleIntensityRanged", "a_min": 0, "a_max": 1},
    )
    assert "second intensity step" in _refusal(tmp_path, config=config)


def test_bad_json(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "configs" / "inference.json").write_text('{\n  "network_def": {,\n}')
    with pytest.raises(PipelineError, match=r"inference\.json: invalid JSON at line 2"):
        load_bundle(bundle)  # a syntax error is reported before the trust question


def test_bad_yaml_and_missing_metadata(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "a", fmt="yaml")
    (bundle / "configs" / "inference.yaml").write_text("network_def: [unclosed\n")
    with pytest.raises(PipelineError, match=r"inference\.yaml: invalid YAML"):
        load_bundle(bundle)
    bundle = make_bundle(tmp_path / "b")
    (bundle / "configs" / "metadata.json").unlink()
    with pytest.raises(PipelineError, match=r"metadata\.json: missing"):
        load_bundle(bundle)


def test_unsupported_inferer(tmp_path: Path) -> None:
    config = copy.deepcopy(CONFIG)
    config["inferer"] = {"_target_": "SimpleInferer"}
    assert "`SimpleInferer` is not supported" in _refusal(tmp_path, config=config)


@pytest.mark.parametrize(
    ("channel_def", "expected"),
    [
        (None, "channel_def` is missing"),
        ({"0": "spleen", "1": "liver"}, "channel 0 is 'spleen'"),
        ({"0": "background", "2": "liver"}, "must number channels 0..N-1"),
    ],
)
def test_bad_channel_def(tmp_path: Path, channel_def: Any, expected: str) -> None:
    metadata = copy.deepcopy(METADATA)
    pred = metadata["network_data_format"]["outputs"]["pred"]
    if channel_def is None:
        del pred["channel_def"]
    else:
        pred["channel_def"] = channel_def
    message = _refusal(tmp_path, metadata=metadata)
    assert "metadata.json" in message and expected in message


def test_channel_count_must_match_network(tmp_path: Path) -> None:
    metadata = copy.deepcopy(METADATA)
    metadata["network_data_format"]["outputs"]["pred"]["channel_def"] = {
        "0": "background",
        "1": "spleen",
    }
    message = _refusal(tmp_path, metadata=metadata)
    assert "out_channels` is 3" in message and "2 channels" in message


def test_multichannel_input_is_refused(tmp_path: Path) -> None:
    config = copy.deepcopy(CONFIG)
    config["network_def"]["in_channels"] = 4
    assert "takes 4 input channels" in _refusal(tmp_path, config=config)
