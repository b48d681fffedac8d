"""The loader's checks on what the nnU-Net loader hands back (Pipelines built in code)."""

from __future__ import annotations

from dataclasses import dataclass

from medrecon.foreign.nnunet.sliding import tile_starts
from medrecon.foreign.totalseg.loader import _check_names, _with_step_size
from medrecon.foreign.totalseg.tasks import task_spec
from medrecon.labels.terminology import describe
from medrecon.pipeline.config import NetworkSpec, Pipeline, PreprocessSpec


@dataclass(frozen=True)
class _Described:
    folder: str
    tile_step_size: float = 0.5


def _part(names: dict[int, str], foreign=None) -> Pipeline:
    return Pipeline(
        name="Dataset297",
        modality="CT",
        labels=tuple(describe(name, value) for value, name in names.items()),
        preprocess=PreprocessSpec(),
        network=NetworkSpec("nnunet", {}),
        weights=None,
        engine="nnunet",
        foreign=foreign,
    )


def test_the_part_runs_at_totalsegmentators_step_size() -> None:
    part = _with_step_size(_part({1: "spleen"}, _Described("x")), 0.8)
    assert part.foreign.tile_step_size == 0.8 and part.foreign.folder == "x"
    # Step 0.8 of a 64-voxel patch over 110 voxels: 2 tiles, where nnU-Net's 0.5 takes 3.
    assert tile_starts((110,), (64,), 0.8) == [[0, 46]]
    assert tile_starts((110,), (64,)) == [[0, 23, 46]]


def test_dataset_json_names_are_checked_against_the_class_map() -> None:
    spec = task_spec("total", "fast")
    notes: list[str] = []
    _check_names(spec, 0, _part(dict(spec.classes)), notes)
    assert notes == []
    renamed = {**spec.classes, 5: "hepar"}
    _check_names(spec, 0, _part(renamed), notes)
    assert len(notes) == 1
    assert "5: 'hepar' (map: 'liver')" in notes[0] and "follows the map" in notes[0]
