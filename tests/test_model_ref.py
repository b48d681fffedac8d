"""``--model``: what each name or path resolves to, and options that do not fit refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medrecon.cli.main import main
from medrecon.errors import InputError
from medrecon.models.cache import SegmenterCache
from medrecon.models.ref import ModelRef, as_model_ref, parse_folds
from medrecon.models.resolve import detect_kind, resolve_model
from medrecon.pipeline.registry import load_pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_folds_are_numbers_or_all() -> None:
    assert parse_folds("0, 1,4") == (0, 1, 4)
    assert parse_folds("all") == ("all",)
    assert parse_folds(None) is None and parse_folds(" ") is None
    with pytest.raises(InputError, match="fold numbers"):
        parse_folds("0,one")


def test_model_and_pipeline_name_the_same_thing() -> None:
    assert as_model_ref() == ModelRef()  # nothing given: auto
    assert as_model_ref(pipeline="abdomen-ct") == ModelRef("abdomen-ct")
    assert as_model_ref("abdomen-ct", pipeline="auto") == ModelRef("abdomen-ct")
    with pytest.raises(InputError, match="give the model once"):
        as_model_ref("abdomen-ct", pipeline="abdomen-mr")
    ref = as_model_ref(ModelRef("x", folds=(0,)), tta=False)
    assert ref == ModelRef("x", folds=(0,), tta=False)


def test_a_loaded_pipeline_passes_through_but_takes_no_options() -> None:
    pipe = load_pipeline("abdomen-ct", check_weights=False)
    assert as_model_ref(pipe) is pipe
    with pytest.raises(InputError, match="already loaded"):
        as_model_ref(pipe, folds=(0,))


def test_kinds_are_told_apart(tmp_path: Path) -> None:
    assert detect_kind("auto") == "auto"
    assert detect_kind("totalsegmentator:total") == "totalsegmentator"
    assert detect_kind("abdomen-ct") == "pipeline"
    assert detect_kind(str(ROOT / "pipelines" / "abdomen-ct.yaml")) == "pipeline"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    with pytest.raises(InputError, match="not a model medrecon knows") as err:
        detect_kind(str(tmp_path / "notes"))
    for kind in ("MONAI bundle", "nnU-Net v2 results folder", "totalsegmentator:TASK"):
        assert kind in str(err.value)


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"folds": (0,)}, "--folds"),
        ({"configuration": "3d_fullres"}, "--configuration"),
        ({"trust": True}, "--trust-bundle"),
        ({"labels": "labels.json"}, "--labels"),
    ],
)
def test_options_for_another_kind_are_refused(options, flag) -> None:
    with pytest.raises(InputError) as err:
        resolve_model(ModelRef("abdomen-ct", **options), check_weights=False)
    assert flag in str(err.value) and "'abdomen-ct' is a medrecon pipeline" in str(err.value)


@pytest.fixture
def flipping_pipeline(ball_pipeline: Path) -> Path:
    """The test pipeline with test-time flips (beside it: its weights path is relative)."""
    data = yaml.safe_load(ball_pipeline.read_text())
    data["inference"]["tta_flips"] = [[0], [1]]
    path = ball_pipeline.with_name("flipping.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def test_no_tta_turns_off_a_pipelines_flips(flipping_pipeline: Path) -> None:
    with_tta = resolve_model(ModelRef(str(flipping_pipeline))).pipeline
    assert with_tta.inference.tta_flips == ((0,), (1,))
    choice = resolve_model(ModelRef(str(flipping_pipeline), tta=False))
    assert choice.kind == "pipeline" and choice.pipeline.inference.tta_flips == ()
    assert choice.found == f"medrecon pipeline test-ball ({flipping_pipeline})"


def test_absolute_paths_for_workers(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "m.yaml").write_text("x")
    monkeypatch.chdir(tmp_path)
    ref = ModelRef("m.yaml", labels="l.json").absolute()
    assert ref.ref == str(tmp_path / "m.yaml") and ref.labels == str(tmp_path / "l.json")
    assert ModelRef("totalsegmentator:total").absolute().ref == "totalsegmentator:total"


def test_the_cache_loads_a_model_once_however_it_is_named(flipping_pipeline: Path) -> None:
    cache = SegmenterCache(device="cpu")
    first = cache.get(ModelRef(str(flipping_pipeline)))
    # The model's file is read once: later studies reuse what was read.
    assert cache.resolve(ModelRef(str(flipping_pipeline))).pipeline is first.pipeline
    assert cache.get(ModelRef(str(flipping_pipeline))) is first
    assert cache.get(str(flipping_pipeline)) is first  # same pipeline, other spelling
    no_flips = cache.get(ModelRef(str(flipping_pipeline), tta=False))
    assert no_flips is not first and no_flips.pipeline.inference.tta_flips == ()
    assert len(cache) == 2 and cache.n_networks == 1  # one network serves both


def test_cli_refuses_an_option_that_does_not_fit(tmp_path: Path, capsys) -> None:
    sample = ROOT / "sample_data" / "ct-abdomen"
    out = tmp_path / "l.nii.gz"
    code = main(["segment", str(sample), "-o", str(out), "--model", "abdomen-ct", "--folds", "0"])
    assert code == 2
    assert "--folds applies to" in capsys.readouterr().err
    assert not out.exists()


def test_a_bundle_is_found_by_its_folder_or_its_inference_config(tmp_path: Path) -> None:
    from bundle_helpers import make_bundle

    bundle = make_bundle(tmp_path / "bundle")
    assert detect_kind(str(bundle)) == "bundle"
    assert detect_kind(str(bundle / "configs" / "inference.json")) == "bundle"
    # A pipeline YAML that happens to sit in a folder named configs stays a pipeline.
    (tmp_path / "mine" / "configs").mkdir(parents=True)
    own = tmp_path / "mine" / "configs" / "my_pipeline.yaml"
    own.write_text("name: x")
    assert detect_kind(str(own)) == "pipeline"
