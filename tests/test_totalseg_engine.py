"""End to end: a TotalSegmentator-shaped home with small real nnU-Net models.

``build_engine(load_totalsegmentator(...))(volume)`` must give labels on the
volume's own grid in TotalSegmentator's numbering, and each part's labels must be
what that part's nnU-Net engine gives on the same resampled image.
"""

from __future__ import annotations

import numpy as np
import pytest
from totalseg_fixture import write_totalseg_home

from medrecon.foreign.nnunet.engine import NnunetSegmenter
from medrecon.foreign.totalseg import load_totalsegmentator, task_spec
from medrecon.foreign.totalseg.grid import from_model_grid, to_model_grid
from medrecon.foreign.totalseg.merge import merge_parts, part_lookup
from medrecon.models.engines import build_engine
from medrecon.volume import Volume


def _ct_like() -> Volume:
    """A small LPS-ordered CT-like volume (i -> left, j -> posterior), 0.9 x 0.9 x 3 mm."""
    rng = np.random.default_rng(1)
    array = rng.normal(50, 400, size=(40, 36, 12)).astype(np.float32)
    affine = np.array([[-0.9, 0, 0, 20.0], [0, -0.9, 0, 30.0], [0, 0, 3.0, -50.0], [0, 0, 0, 1]])
    return Volume(array, affine)


@pytest.fixture(scope="module")
def total_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("totalseg")
    write_totalseg_home(home, "total")
    write_totalseg_home(home, "total", "fast")
    return home


def test_total_runs_all_parts_and_merges_like_totalsegmentator(total_home, monkeypatch) -> None:
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(total_home))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    pipeline = load_totalsegmentator("totalsegmentator:total")
    spec = task_spec("total")
    assert pipeline.engine == "totalsegmentator" and pipeline.modality == "CT"
    assert [(label.value, label.name) for label in pipeline.labels] == sorted(spec.classes.items())
    assert all(label.type is not None for label in pipeline.labels)
    engine = build_engine(pipeline, device="cpu")
    volume = _ct_like()
    seg = engine(volume)
    assert seg.labels.spatial_shape == volume.spatial_shape
    assert np.array_equal(seg.labels.affine, volume.affine)
    assert seg.label_table == pipeline.labels and seg.labels.array.dtype == np.uint8
    assert set(np.unique(seg.labels.array)) <= {0, *spec.classes}

    # the same resampled image through each part's own nnU-Net engine
    model_input, grid = to_model_grid(volume, spec.spacing)
    part_maps = []
    for part, part_pipeline in zip(spec.parts, pipeline.foreign.parts, strict=True):
        alone = NnunetSegmenter(part_pipeline, device="cpu")(model_input).labels
        assert alone.spatial_shape == model_input.spatial_shape
        assert np.unique(alone.array).size > 1, f"part {part.dataset_id} found nothing"
        part_maps.append(np.asarray(alone.array))
    lookups = [part_lookup(part.classes, spec.classes) for part in spec.parts]
    expected = from_model_grid(merge_parts(part_maps, lookups), grid)
    assert np.array_equal(seg.labels.array, expected)
    # every part's classes made it into the merged map under their global numbers
    present = set(np.unique(seg.labels.array).tolist())
    for part, lut in zip(spec.parts, lookups, strict=True):
        assert present & set(lut[1:].tolist()), f"no class of part {part.dataset_id} survived"
    assert {"part_291", "part_295", "merge"} <= set(seg.timings)
    # Each part ran at TotalSegmentator's step (the parts above ran the same pipelines).
    assert all(p.foreign.tile_step_size == spec.step_size for p in pipeline.foreign.parts)


def test_fast_is_one_model_back_on_the_native_grid(total_home) -> None:
    pipeline = load_totalsegmentator("total:fast", home=total_home)
    assert pipeline.name == "totalsegmentator-total-fast"
    volume = _ct_like()
    seg = build_engine(pipeline, device="cpu")(volume)
    model_input, grid = to_model_grid(volume, (3.0, 3.0, 3.0))
    alone = NnunetSegmenter(pipeline.foreign.parts[0], device="cpu")(model_input).labels.array
    assert np.array_equal(seg.labels.array, from_model_grid(np.asarray(alone, np.uint8), grid))
    names = {label.value: label.name for label in seg.present_labels()}
    assert names and set(names.values()) <= set(task_spec("total").classes.values())
