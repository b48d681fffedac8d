"""Pipeline files: a valid one loads into typed dataclasses; every bad one fails
at load time with a message naming the file and the key."""

from __future__ import annotations

import copy

import pytest
import torch
from pipeline_helpers import SMALL_UNET, valid_pipeline_dict, write_pipeline

from medrecon.errors import PipelineError
from medrecon.labels import Code
from medrecon.pipeline.config import IntensitySpec, Pipeline, RefineStep
from medrecon.pipeline.parse import parse_pipeline, read_pipeline_file
from medrecon.pipeline.registry import list_pipelines, load_pipeline, shipped_pipeline_dir
from medrecon.pipeline.weights import sha256_file


@pytest.fixture
def weights(tmp_path):
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    path = tmp_path / "weights.pt"
    torch.save(UNet(spatial_dims=3, **SMALL_UNET).state_dict(), path)
    return path


def test_valid_file_loads_into_dataclasses(tmp_path, weights):
    path = write_pipeline(tmp_path, valid_pipeline_dict(sha256=sha256_file(weights)))
    p = read_pipeline_file(path)
    assert isinstance(p, Pipeline)
    assert p.name == "test-ball" and p.modality == "CT" and p.source == path
    (label,) = p.labels
    assert (label.value, label.name, label.color) == (1, "ball", (230, 80, 60))
    assert label.category == Code("123037004", "SCT", "Anatomical Structure")
    assert label.type == Code("10200004", "SCT", "Liver")
    assert p.preprocess.spacing == (2.0, 2.0, 2.0)
    assert p.preprocess.intensity == IntensitySpec(mode="ct_window", window=(-100.0, 200.0))
    assert p.network.name == "UNet" and p.network.out_channels == 2
    assert p.weights.path == weights.resolve()
    assert p.inference.roi_size == (32, 32, 32) and p.inference.sw_batch_size == 2
    assert p.refine == (RefineStep("keep_largest_component", (1,), {"keep_cut_pieces": 0.0}),)
    assert p.outputs == ("labels", "stats")
    assert load_pipeline(path) == p  # by path, through the registry
    assert load_pipeline(p) is p


def _error_for(tmp_path, data, **kwargs) -> str:
    path = write_pipeline(tmp_path, data)
    with pytest.raises(PipelineError) as info:
        read_pipeline_file(path, **kwargs)
    message = str(info.value)
    assert str(path) in message  # every message names the file
    return message


def _broken(change):
    data = valid_pipeline_dict()
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(colour="red"), "unknown key(s) 'colour' in 'top level'"),
        (lambda d: d["inference"].update(roi=[1, 2, 3]), "unknown key(s) 'roi' in 'inference'"),
        (lambda d: d["labels"][1].update(colour=[1, 2, 3]), "'colour' in 'labels.1'"),
        (lambda d: d["labels"][1].pop("name"), "'labels.1.name': every label needs a name"),
        (lambda d: d["labels"][1].update(name="  "), "every label needs a name"),
        (lambda d: d["labels"][1].update(color=[300, 0, 0]), "three integers 0-255"),
        (lambda d: d["labels"].update({"two": {"name": "x"}}), "'two' is not an integer"),
        (lambda d: d["labels"].update({2: {"name": "ball", "color": [1, 2, 3]}}), "used twice"),
        (lambda d: d.pop("modality"), "'modality': is required"),
        (lambda d: d["network"].update(name="ResNet"), "must be one of DynUNet, UNet, SegResNet"),
        (lambda d: d["network"]["args"].update(depth=3), "UNet takes no argument(s) ['depth']"),
        (lambda d: d["network"]["args"].pop("channels"), "UNet needs argument(s) ['channels']"),
        (lambda d: d["network"]["args"].update(out_channels=3), "out_channels must be 2"),
        (lambda d: d["preprocess"]["intensity"].update(mode="minmax"), "must be one of ct_window"),
        (lambda d: d["preprocess"]["intensity"].pop("window"), "'preprocess.intensity.window'"),
        (lambda d: d["preprocess"].update(spacing=[1, -1, 1]), "3 positive floats"),
        (lambda d: d["preprocess"].update(orientation="RRS"), "three axis codes"),
        (lambda d: d["inference"].update(overlap=1.5), "must be in [0.0, 0.95]"),
        (lambda d: d["inference"].update(sw_batch_size=0), "integer >= 1"),
        (lambda d: d["inference"].update(tta_flips=[[3]]), "'inference.tta_flips'"),
        (lambda d: d["inference"].update(blend="max"), "'gaussian' or 'constant'"),
        (lambda d: d["refine"].append({"step": "dilate"}), "unknown step 'dilate'"),
        (lambda d: d["refine"].append({"step": "remove_small_islands"}), "min_volume_mm3'"),
        (lambda d: d["refine"].append({"step": "fill_holes", "labels": ["liver"]}), "'liver'"),
        (lambda d: d["refine"].append({"step": "keep_below"}), "keep_below needs the labels"),
        (
            lambda d: d["refine"].append({"step": "keep_below", "labels": [1]}),
            "'refine[1].reference'",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_below", "labels": [1], "reference": [9]}),
            "9 is not a label",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_above", "reference": [1]}),
            "keep_above needs the labels",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_near_midline", "labels": [1]}),
            "max_offset_mm'",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_below_lungs", "labels": [1]}),
            "min_lung_mm3'",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_below_lungs", "min_lung_mm3": 1e6}),
            "keep_below_lungs needs the labels",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_below_skull", "labels": [1]}),
            "min_head_mm'",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_below_skull", "min_head_mm": 20}),
            "keep_below_skull needs the labels",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_inside_body"}),
            "margin_mm'",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_inside_body", "margin_mm": -1}),
            "margin_mm",
        ),
        (
            lambda d: d["refine"].append({"step": "keep_largest_component", "keep_cut_pieces": 1}),
            "'refine[1].keep_cut_pieces': must be true or false",
        ),
        (lambda d: d.update(outputs=["labels", "movie"]), "'outputs' must be a list"),
        (lambda d: d["weights"].update(sha256="abc"), "must be 64 hex digits"),
        (lambda d: d.update(coarse={"margin_mm": 5}), "'coarse.spacing': is required"),
    ],
)
def test_bad_pipeline_files_fail_at_load(tmp_path, weights, change, expected):
    assert expected in _error_for(tmp_path, _broken(change))


def test_keep_cut_pieces_is_a_flag(tmp_path, weights):
    data = valid_pipeline_dict(sha256=sha256_file(weights))
    data["refine"][0]["keep_cut_pieces"] = True
    (step,) = read_pipeline_file(write_pipeline(tmp_path, data)).refine
    assert step.params == {"keep_cut_pieces": 1.0}


def test_missing_weights_file(tmp_path):
    message = _error_for(tmp_path, valid_pipeline_dict(weights="nowhere/w.pt"))
    assert "weights file not found" in message and "nowhere" in message
    # Listing tools may read the file without the weights.
    path = write_pipeline(tmp_path, valid_pipeline_dict(weights="nowhere/w.pt"))
    assert read_pipeline_file(path, check_weights=False).weights.path.name == "w.pt"


def test_checksum_mismatch(tmp_path, weights):
    message = _error_for(tmp_path, valid_pipeline_dict(sha256="0" * 64))
    assert sha256_file(weights) in message and "corrupt or belongs to another model" in message


def test_not_yaml_and_not_a_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        read_pipeline_file(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(PipelineError, match="must be a mapping"):
        read_pipeline_file(path)
    with pytest.raises(PipelineError, match="pipeline file not found"):
        read_pipeline_file(tmp_path / "absent.yaml")


def test_weights_file_with_code_is_refused(tmp_path):
    """weights_only=True: a pickle holding anything but tensors does not load."""
    from medrecon.pipeline.model import load_model

    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "fn": copy.deepcopy}, path)
    p = read_pipeline_file(write_pipeline(tmp_path, valid_pipeline_dict()))
    with pytest.raises(PipelineError, match="weights_only=True"):
        load_model(p.network, p.weights)


def test_weights_of_another_network_are_refused(tmp_path):
    from monai.networks.nets import UNet

    from medrecon.pipeline.model import load_model

    other = dict(SMALL_UNET, channels=[4, 8, 16])
    torch.save(UNet(spatial_dims=3, **other).state_dict(), tmp_path / "weights.pt")
    p = read_pipeline_file(write_pipeline(tmp_path, valid_pipeline_dict()))
    with pytest.raises(PipelineError, match="do not fit network UNet"):
        load_model(p.network, p.weights)


def test_wrapped_and_ddp_state_dicts_load(tmp_path):
    from monai.networks.nets import UNet

    from medrecon.pipeline.model import load_model

    net = UNet(spatial_dims=3, **SMALL_UNET)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"model": state, "epoch": torch.tensor(3)}, tmp_path / "weights.pt")
    p = read_pipeline_file(write_pipeline(tmp_path, valid_pipeline_dict()))
    loaded = load_model(p.network, p.weights)
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert not loaded.training


def test_unknown_pipeline_name_lists_shipped_ones():
    with pytest.raises(PipelineError, match="no pipeline named 'no-such-pipeline'"):
        load_pipeline("no-such-pipeline")


def test_shipped_pipelines_are_valid_files():
    """Every YAML shipped in pipelines/ parses; the listing reports each one's status."""
    infos = list_pipelines()
    shipped = sorted(p.stem for p in shipped_pipeline_dir().glob("*.yaml"))
    assert sorted(i.path.stem for i in infos) == shipped
    for info in infos:
        assert info.pipeline is not None, info.status
        assert info.status == "ready" or info.status.startswith("not usable")


def test_parse_pipeline_from_mapping(tmp_path, weights):
    data = valid_pipeline_dict(weights=str(weights))
    data["labels"] = {1: {"name": "ball", "color": [1, 2, 3]}}
    p = parse_pipeline(data)
    assert p.labels[0].category is None and p.source is None


def test_shipped_pipelines_sharing_a_weights_file_pin_the_same_sha256():
    """abdomen-ct and abdomen-mr run one weights file: when it is retrained, both
    YAMLs must get the new SHA-256, or one of them stops loading."""
    from medrecon.pipeline.registry import shipped_pipelines

    by_file: dict = {}
    for p in shipped_pipelines():  # weights not checked: this test is about the pins
        specs = [p.weights, p.coarse.weights if p.coarse else None]
        for spec in filter(None, specs):
            by_file.setdefault(spec.path, []).append((p.name, spec.sha256))
    for path, pins in by_file.items():
        assert len({sha for _, sha in pins}) == 1, f"{path.name} pinned differently: {pins}"
    ct = read_pipeline_file(shipped_pipeline_dir() / "abdomen-ct.yaml", check_weights=False)
    mr = read_pipeline_file(shipped_pipeline_dir() / "abdomen-mr.yaml", check_weights=False)
    assert mr.weights == ct.weights and ct.weights.path.name == "abdomen-ct.pt"
    assert ct.weights.sha256 is not None


def test_abdomen_mr_is_abdomen_ct_with_mr_normalisation():
    """Everything but name, modality, description and intensity step is shared."""
    from dataclasses import replace

    ct = read_pipeline_file(shipped_pipeline_dir() / "abdomen-ct.yaml", check_weights=False)
    mr = read_pipeline_file(shipped_pipeline_dir() / "abdomen-mr.yaml", check_weights=False)
    assert (mr.name, mr.modality) == ("abdomen-mr", "MR")
    assert "contrast-agnostic" in mr.description and "MR intensity normalisation" in mr.description
    assert mr.preprocess.intensity == IntensitySpec(mode="percentile", lower=0.5, upper=99.5)
    as_ct = replace(
        mr,
        name=ct.name,
        modality=ct.modality,
        description=ct.description,
        preprocess=replace(mr.preprocess, intensity=ct.preprocess.intensity),
        source=ct.source,
    )
    assert as_ct == ct
