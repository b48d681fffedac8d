"""The bundle engine, through ``build_engine``: the bundle's own steps on medrecon's Volume.

Bundles from :mod:`bundle_helpers`; the threshold bundle's label map is known
in closed form, so a faithful run must give it exactly, on the native grid.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import (
    AFFINE,
    WINDOW,
    config_with,
    make_bundle,
    phantom,
    steps,
)

from medrecon.cli.main import main
from medrecon.errors import PipelineError
from medrecon.foreign.bundle import load_bundle
from medrecon.foreign.bundle.engine import BundleSegmenter
from medrecon.io.nifti import read_nifti, write_nifti
from medrecon.models.engines import build_engine


def _engine(bundle: Path, **kwargs) -> BundleSegmenter:
    engine = build_engine(load_bundle(bundle, trust=True, **kwargs), device="cpu")
    assert isinstance(engine, BundleSegmenter)
    return engine


def test_threshold_bundle_gives_exactly_the_boxes(tmp_path: Path) -> None:
    volume, expected = phantom()
    engine = _engine(make_bundle(tmp_path / "threshold"))
    assert engine.pipeline.label_dtype is np.uint8 and engine.parts.left_out == ["SaveImaged"]
    seg = engine(volume)
    labels = seg.labels
    assert labels.shape == volume.shape and labels.array.dtype == np.uint8
    np.testing.assert_array_equal(labels.affine, volume.affine)
    # Orientationd flipped the LPS-like axes and Invertd flipped them back.
    np.testing.assert_array_equal(labels.array, expected)
    assert [lab.name for lab in seg.present_labels()] == ["spleen", "liver"]
    assert seg.device == "cpu" and seg.warnings == [] and seg.pipeline is engine.pipeline
    assert set(seg.timings) == {"preprocess", "inference", "resample"}
    # Built once, reused: a second volume gives its own answer.
    again = engine(volume.with_array(np.zeros(volume.shape, np.int16)))
    assert not again.labels.array.any()
    assert not (tmp_path / "threshold" / "eval").exists()  # the bundle's writer was left out


def test_yaml_bundle_runs_the_same(tmp_path: Path) -> None:
    volume, expected = phantom()
    seg = _engine(make_bundle(tmp_path / "y", fmt="yaml"))(volume)
    np.testing.assert_array_equal(seg.labels.array, expected)


def test_resampling_bundle_with_invertd_lands_on_the_native_grid(tmp_path: Path) -> None:
    config = copy.deepcopy(config_with())
    spacing = {"_target_": "Spacingd", "keys": "@image_key", "pixdim": [1.0, 1.0, 1.0]}
    steps(config).insert(3, spacing)
    volume, expected = phantom()
    seg = _engine(make_bundle(tmp_path / "s", config))(volume)
    assert seg.warnings == []
    np.testing.assert_array_equal(seg.labels.affine, volume.affine)
    # Bilinear resampling and back blur the box edges by a voxel at most.
    assert (seg.labels.array == expected).mean() > 0.97


def test_without_invertd_labels_are_resampled_with_a_warning(tmp_path: Path) -> None:
    config = copy.deepcopy(config_with())
    steps(config).insert(
        3, {"_target_": "Spacingd", "keys": "@image_key", "pixdim": [4.0, 4.0, 4.0]}
    )
    post = config["postprocessing"]["transforms"]
    config["postprocessing"]["transforms"] = [s for s in post if s["_target_"] != "Invertd"]
    volume, expected = phantom()
    seg = _engine(make_bundle(tmp_path / "n", config))(volume)
    assert any("resampled nearest-neighbour" in w for w in seg.warnings)
    assert seg.labels.shape == volume.shape
    np.testing.assert_array_equal(seg.labels.affine, volume.affine)
    assert (seg.labels.array == expected).mean() > 0.9


def _scripts_bundle(root: Path, divisor: float) -> Path:
    """A bundle whose intensity step is its own `scripts.transforms.Divided`."""
    config = copy.deepcopy(config_with())
    steps(config)[3] = {
        "_target_": "scripts.transforms.Divided",
        "keys": "@image_key",
        "divisor": divisor,
    }
    bundle = make_bundle(root, config)
    (bundle / "scripts").mkdir()
    (bundle / "scripts" / "__init__.py").write_text("")
    (bundle / "scripts" / "transforms.py").write_text(
        "from monai.transforms import MapTransform\n\n\n"
        "class Divided(MapTransform):\n"
        "    def __init__(self, keys, divisor):\n"
        "        super().__init__(keys)\n"
        "        self.divisor = divisor\n\n"
        "    def __call__(self, data):\n"
        "        d = dict(data)\n"
        "        for key in self.key_iterator(d):\n"
        "            d[key] = (d[key] / self.divisor).clamp(0, 1)\n"
        "        return d\n"
    )
    return bundle


def test_bundle_local_custom_transform(tmp_path: Path) -> None:
    volume, expected = phantom()
    seg = _engine(_scripts_bundle(tmp_path / "one", 1000.0))(volume)
    np.testing.assert_array_equal(seg.labels.array, expected)
    # A second bundle with its own `scripts` package gets its own, not the cached one:
    # same class name, but dividing by 2000 leaves nothing above 0.5.
    other = _scripts_bundle(tmp_path / "two", 2000.0)
    (other / "scripts" / "transforms.py").write_text(
        (other / "scripts" / "transforms.py").read_text().replace("clamp(0, 1)", "clamp(0, 0.4)")
    )
    assert not _engine(other)(volume).labels.array.any()


def test_refused_at_engine_build(tmp_path: Path) -> None:
    cases = {
        "no_evaluator": (config_with(evaluator=None), "no `evaluator` component"),
        "ensemble": (
            config_with(evaluator={"_target_": "EnsembleEvaluator", "networks": []}),
            "EnsembleEvaluator` is not supported",
        ),
        "prepare": (
            config_with(evaluator={**config_with()["evaluator"], "prepare_batch": "$None"}),
            "custom `prepare_batch`",
        ),
        "inferer": (config_with(inferer={"_target_": "torch.nn.Identity"}), "not a MONAI Inferer"),
        "loader": (None, "starts with EnsureChannelFirstd, not LoadImaged"),
        "two_images": (None, "loads image, label"),
        "broken": (
            config_with(inferer={"_target_": "SlidingWindowInferer"}),
            "evaluating `inferer` failed",
        ),
    }
    loader_first = config_with()
    del steps(loader_first)[0]
    cases["loader"] = (loader_first, cases["loader"][1])
    two = config_with()
    steps(two)[0]["keys"] = ["image", "label"]
    cases["two_images"] = (two, cases["two_images"][1])
    for name, (config, message) in cases.items():
        pipeline = load_bundle(make_bundle(tmp_path / name, config), trust=True)
        with pytest.raises(PipelineError, match=message):
            build_engine(pipeline, device="cpu")


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    config = config_with()
    config["network_def"]["kernel_size"] = 3
    with pytest.raises(PipelineError, match="do not fit the bundle's `network_def`"):
        _engine(make_bundle(tmp_path / "k", config))
    bundle = make_bundle(tmp_path / "junk")
    (bundle / "models" / "model.pt").write_bytes(b"junk")
    with pytest.raises(PipelineError, match="weights_only=True"):
        _engine(bundle)


def test_4d_volume_and_non_bundle_pipeline_are_refused(tmp_path: Path) -> None:
    engine = _engine(make_bundle(tmp_path / "b"))
    volume, _ = phantom()
    with pytest.raises(PipelineError, match="fed one 3D image"):
        engine(volume.with_array(np.stack([volume.array] * 2, axis=-1)))
    with pytest.raises(PipelineError, match="is not a MONAI bundle"):
        BundleSegmenter(
            engine.pipeline.__class__(**{**engine.pipeline.__dict__, "engine": "native"})
        )


def test_probabilities_are_not_kept(tmp_path: Path) -> None:
    volume, expected = phantom()
    seg = _engine(make_bundle(tmp_path / "b"))(volume, probabilities=True)
    assert seg.probabilities is None and "no probabilities" in seg.warnings[0]
    np.testing.assert_array_equal(seg.labels.array, expected)


def test_unnamed_label_values_are_reported(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text('{"1": "spleen"}')  # the bundle also makes 2
    volume, _ = phantom()
    seg = _engine(make_bundle(tmp_path / "b"), labels=labels)(volume)
    assert any("label values [2]" in w and "labels.json" in w for w in seg.warnings)


def test_window_is_the_bundles(tmp_path: Path) -> None:
    """A scaled window (not [0, 1]) that the old mapping refused now just runs."""
    config = config_with()
    steps(config)[3] = {**WINDOW, "a_max": 2000, "b_max": 2.0}
    volume, expected = phantom()
    seg = _engine(make_bundle(tmp_path / "w", config))(volume)
    np.testing.assert_array_equal(seg.labels.array, expected)


def test_cli_bundle_needs_trust(tmp_path: Path, capsys) -> None:
    volume, _ = phantom()
    source = write_nifti(volume, tmp_path / "ct.nii.gz")
    bundle = make_bundle(tmp_path / "threshold bundle")
    out = tmp_path / "seg.nii.gz"
    args = ["segment", str(source), "-o", str(out), "--bundle", str(bundle), "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "medrecon segment: error:" in err and "--trust-bundle" in err
    assert "bundle configs can run arbitrary Python" in err
    assert not out.exists()
    np.testing.assert_array_equal(volume.affine, AFFINE)


def test_cli_segment_with_a_trusted_bundle(tmp_path: Path, capsys) -> None:
    volume, expected = phantom()
    source = write_nifti(volume, tmp_path / "ct.nii.gz")
    bundle = make_bundle(tmp_path / "threshold bundle")
    out = tmp_path / "seg.nii.gz"
    args = ["segment", str(source), "-o", str(out), "--bundle", str(bundle), "--trust-bundle"]
    assert main([*args, "--device", "cpu"]) == 0
    assert "model: MONAI bundle" in capsys.readouterr().out
    labels = read_nifti(out)
    np.testing.assert_array_equal(labels.array, expected)
    np.testing.assert_allclose(labels.affine, volume.affine)
    assert out.with_name("seg.ctbl").is_file()
