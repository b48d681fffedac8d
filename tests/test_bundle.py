"""Reading a MONAI bundle folder: the trust gate, labels, refusals, missing files.

Nothing in a bundle's config may be evaluated before the user trusts it, and
load_bundle itself evaluates nothing even then (the engine does).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from bundle_helpers import METADATA, THRESHOLD_CONFIG, config_with, make_bundle, steps

from medrecon.errors import PipelineError
from medrecon.foreign.bundle import TRUST_FLAG, BundleSpec, is_bundle_folder, load_bundle
from medrecon.models.engines import build_engine


def _metadata(**pred) -> dict:
    metadata = copy.deepcopy(METADATA)
    metadata["network_data_format"]["outputs"]["pred"].update(pred)
    return metadata


def test_trust_gate_evaluates_nothing_until_the_engine_is_built(tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    config = copy.deepcopy(THRESHOLD_CONFIG)
    # A `$` expression with a side effect: it runs when preprocessing is instantiated.
    steps(config).append(
        {
            "_target_": "Lambdad",
            "keys": "image",
            "func": f"$open({str(marker)!r}, 'w').close() or (lambda x: x)",
        }
    )
    bundle = make_bundle(tmp_path / "b", config)
    with pytest.raises(PipelineError) as exc:
        load_bundle(bundle)
    assert TRUST_FLAG in str(exc.value) and "arbitrary Python" in str(exc.value)
    assert "inference.json" in str(exc.value)
    assert not marker.exists()
    pipeline = load_bundle(bundle, trust=True)  # trusted, but still only read
    assert not marker.exists()
    build_engine(pipeline, device="cpu")
    assert marker.exists()


def test_pipeline_fields(tmp_path: Path) -> None:
    pipeline = load_bundle(make_bundle(tmp_path / "b"), trust=True)
    assert pipeline.engine == "bundle" and isinstance(pipeline.foreign, BundleSpec)
    assert pipeline.name == "Threshold test bundle" and pipeline.version == "0.1.0"
    assert pipeline.modality == "CT" and pipeline.weights is None and pipeline.refine == ()
    assert pipeline.network.name == "bundle:torch.nn.Conv3d"
    assert [(lab.value, lab.name) for lab in pipeline.labels] == [(1, "spleen"), (2, "liver")]
    # Known structures get their codes and colours from the terminology table.
    assert pipeline.labels[0].category is not None
    spec = pipeline.foreign
    assert spec.root == (tmp_path / "b").resolve() and spec.weights.name == "model.pt"
    assert spec.network_key == "network_def" and spec.input_key == "image"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_labels_file_when_metadata_has_no_channel_def(tmp_path: Path, fmt: str) -> None:
    metadata = copy.deepcopy(METADATA)
    del metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    bundle = make_bundle(tmp_path / "b", metadata=metadata)
    with pytest.raises(PipelineError, match=r"channel_def` is missing.*--labels"):
        load_bundle(bundle, trust=True)
    table = {0: "background", 1: "liver", 2: "spleen"}
    labels = tmp_path / f"labels.{fmt}"
    labels.write_text(json.dumps(table) if fmt == "json" else yaml.safe_dump(table))
    pipeline = load_bundle(bundle, trust=True, labels=labels)
    assert [(lab.value, lab.name) for lab in pipeline.labels] == [(1, "liver"), (2, "spleen")]
    assert pipeline.foreign.labels_from == str(labels)


def test_bad_labels_files(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    with pytest.raises(PipelineError, match="labels file not found"):
        load_bundle(bundle, trust=True, labels=tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"liver": 1}))
    with pytest.raises(PipelineError, match="keys must be label values"):
        load_bundle(bundle, trust=True, labels=bad)
    bad.write_text(json.dumps({"1": "liver", "2": "liver"}))
    with pytest.raises(PipelineError, match="repeated"):
        load_bundle(bundle, trust=True, labels=bad)


@pytest.mark.parametrize(
    ("channel_def", "expected"),
    [
        ({"0": "background"}, "no label besides background"),
        ({"0": "background", "2": "liver"}, "0..N-1"),
        ({"0": "spleen", "1": "liver"}, "channel 0 is 'spleen'"),
        ({"a": "background"}, "channel numbers"),
    ],
)
def test_bad_channel_def(tmp_path: Path, channel_def: dict, expected: str) -> None:
    bundle = make_bundle(tmp_path / "b", metadata=_metadata(channel_def=channel_def))
    with pytest.raises(PipelineError, match=expected):
        load_bundle(bundle, trust=True)


def test_out_channels_must_match_channel_def(tmp_path: Path) -> None:
    metadata = _metadata(channel_def={"0": "background", "1": "spleen"})
    with pytest.raises(PipelineError, match=r"out_channels` is 3 but .* names 2"):
        load_bundle(make_bundle(tmp_path / "b", metadata=metadata), trust=True)


def test_several_inputs_are_refused_by_name(tmp_path: Path) -> None:
    metadata = copy.deepcopy(METADATA)
    metadata["network_data_format"]["inputs"]["label"] = {"type": "image"}
    with pytest.raises(PipelineError, match=r"several inputs \(image, label\)"):
        load_bundle(make_bundle(tmp_path / "a", metadata=metadata), trust=True)
    metadata = copy.deepcopy(METADATA)
    metadata["network_data_format"]["inputs"]["image"].update(
        num_channels=4, channel_def={"0": "FLAIR", "1": "T1", "2": "T1c", "3": "T2"}
    )
    with pytest.raises(PipelineError, match=r"takes 4 input images as channels.*FLAIR.*T2"):
        load_bundle(make_bundle(tmp_path / "b", metadata=metadata), trust=True)


def test_yaml_config_and_folder_forms(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "outer" / "b", fmt="yaml")
    pipeline = load_bundle(bundle, trust=True)
    assert pipeline.foreign.config.name == "inference.yaml"
    # Its config file, or the folder `monai.bundle download` extracted into, name it too.
    assert (
        load_bundle(bundle / "configs" / "inference.yaml", trust=True).foreign == pipeline.foreign
    )
    assert load_bundle(tmp_path / "outer", trust=True).foreign == pipeline.foreign
    assert is_bundle_folder(bundle) and is_bundle_folder(tmp_path / "outer")
    assert not is_bundle_folder(tmp_path) and not is_bundle_folder(tmp_path / "nope")


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no such bundle folder"):
        load_bundle(tmp_path / "nope", trust=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="no configs/ folder"):
        load_bundle(tmp_path / "empty", trust=True)
    bundle = make_bundle(tmp_path / "b", model=None)
    with pytest.raises(PipelineError, match=r"models/model.pt.*missing"):
        load_bundle(bundle, trust=True)
    ts = make_bundle(tmp_path / "ts", model="model.ts")
    with pytest.raises(PipelineError, match="TorchScript bundles are not supported"):
        load_bundle(ts, trust=True)
    (ts / "configs" / "metadata.json").unlink()
    (ts / "models" / "model.pt").write_bytes(b"")
    with pytest.raises(PipelineError, match=r"configs/metadata.json"):
        load_bundle(ts, trust=True)
    (bundle / "configs" / "inference.json").unlink()
    with pytest.raises(PipelineError, match="no inference config"):
        load_bundle(bundle, trust=True)
    assert not is_bundle_folder(bundle)


def test_malformed_configs(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    config = bundle / "configs" / "inference.json"
    config.write_text("{ not json")
    with pytest.raises(PipelineError, match="invalid JSON at line 1"):
        load_bundle(bundle, trust=True)
    config.write_text(json.dumps(config_with(network_def=None)))
    with pytest.raises(PipelineError, match="no `network_def`"):
        load_bundle(bundle, trust=True)
    (bundle / "configs" / "inference.yaml").write_text("a: [")
    with pytest.raises(PipelineError, match="several inference configs"):
        load_bundle(bundle, trust=True)
    config.unlink()
    with pytest.raises(PipelineError, match="invalid YAML"):
        load_bundle(bundle, trust=True)


def test_modality_fallback(tmp_path: Path) -> None:
    metadata = copy.deepcopy(METADATA)
    metadata["network_data_format"]["inputs"]["image"]["modality"] = "none"
    config = copy.deepcopy(THRESHOLD_CONFIG)
    assert load_bundle(make_bundle(tmp_path / "a", config, metadata), trust=True).modality == "MR"
    steps(config)[3]["a_min"] = -100  # a window below 0 is Hounsfield units
    assert load_bundle(make_bundle(tmp_path / "b", config, metadata), trust=True).modality == "CT"
