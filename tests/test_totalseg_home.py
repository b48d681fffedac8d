"""Finding TotalSegmentator's weights where it keeps them (tmp folders, no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medrecon.errors import PipelineError
from medrecon.foreign.totalseg import load_totalsegmentator
from medrecon.foreign.totalseg.home import CHECKPOINT, find_part, results_folders
from medrecon.foreign.totalseg.tasks import task_spec


def lay_out(
    results: Path, dataset_id: int, mode: str = "default", folder: str | None = None
) -> Path:
    """An empty checkpoint where TotalSegmentator puts dataset ``dataset_id``."""
    spec = task_spec("total", mode)
    part = next(p for p in spec.parts if p.dataset_id == dataset_id)
    model = results / (folder or part.folder) / part.trainer_folder
    (model / "fold_0").mkdir(parents=True)
    (model / "fold_0" / CHECKPOINT).write_bytes(b"")
    return model


def test_search_order_follows_totalsegmentator(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    env = {"TOTALSEG_WEIGHTS_PATH": "/w", "TOTALSEG_HOME_DIR": "/h"}
    assert results_folders(environ=env) == [
        (Path("/w"), "TOTALSEG_WEIGHTS_PATH"),
        (Path("/h/nnunet/results"), "TOTALSEG_HOME_DIR"),
        (tmp_path / "me" / ".totalsegmentator/nnunet/results", "TotalSegmentator's default home"),
    ]
    assert [p for p, _ in results_folders(environ={})] == [
        tmp_path / "me" / ".totalsegmentator/nnunet/results"
    ]
    # an explicit home is the only place looked in, as a home or as a results folder
    assert [p for p, _ in results_folders(tmp_path / "x", environ=env)] == [
        tmp_path / "x/nnunet/results",
        tmp_path / "x",
    ]


def test_docker_home_maps_to_tmp(monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/")
    assert results_folders(environ={})[-1][0] == Path("/tmp/.totalsegmentator/nnunet/results")


def test_env_var_is_read_when_called(tmp_path, monkeypatch) -> None:
    spec = task_spec("total", "fast")
    model = lay_out(tmp_path / "home" / "nnunet" / "results", 297, "fast")
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    assert find_part(spec, spec.parts[0]) == model
    monkeypatch.delenv("TOTALSEG_HOME_DIR")
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "home" / "nnunet" / "results"))
    assert find_part(spec, spec.parts[0]) == model
    assert find_part(spec, spec.parts[0], home=tmp_path / "home") == model
    assert find_part(spec, spec.parts[0], home=tmp_path / "home/nnunet/results") == model


def test_dataset_found_by_id_when_renamed(tmp_path) -> None:
    """An earlier TotalSegmentator release named it ..._v204; nnU-Net finds datasets by ID."""
    spec = task_spec("total", "fast")
    model = lay_out(
        tmp_path, 297, "fast", folder="Dataset297_TotalSegmentator_total_3mm_1559subj_v204"
    )
    assert find_part(spec, spec.parts[0], home=tmp_path) == model
    lay_out(tmp_path, 297, "fast", folder="Dataset297_other")
    with pytest.raises(PipelineError, match="several folders hold dataset 297"):
        find_part(spec, spec.parts[0], home=tmp_path)


def test_missing_weights_name_every_place_and_the_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "ts"))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    results = tmp_path / "ts" / "nnunet" / "results"
    for dataset_id in (291, 292):
        lay_out(results, dataset_id)
    with pytest.raises(PipelineError) as info:
        load_totalsegmentator("totalsegmentator:total")
    message = str(info.value)
    assert (
        "part 3 of 5" in message and "Dataset293_TotalSegmentator_part3_cardiac_1559subj" in message
    )
    assert str(results / "Dataset293_TotalSegmentator_part3_cardiac_1559subj") in message
    assert str(tmp_path / "me" / ".totalsegmentator/nnunet/results") in message
    assert "TOTALSEG_HOME_DIR" in message and "never downloads" in message
    assert "totalseg_download_weights -t total" in message
    assert "TotalSegmentator -i CT.nii.gz -o out --task total" in message


def test_missing_fold_is_named(tmp_path) -> None:
    spec = task_spec("total", "fast", folds=(0, 1))
    lay_out(tmp_path, 297, "fast")
    with pytest.raises(PipelineError, match=r"lacks fold_1/checkpoint_final\.pth") as info:
        find_part(spec, spec.parts[0], home=tmp_path)
    assert "totalseg_download_weights -t total_fast" in str(info.value)
    assert "--task total --fast" in str(info.value)
