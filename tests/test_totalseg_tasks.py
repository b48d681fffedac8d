"""TotalSegmentator task table: self-consistent, and the public class-map facts hold.

Facts checked here were read off TotalSegmentator v2's map_to_binary.py and
map_tasks_config.py (wasserth/TotalSegmentator).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from medrecon.errors import PipelineError
from medrecon.foreign.totalseg import tasks
from medrecon.foreign.totalseg.tasks import parse_spec, task_names, task_spec
from medrecon.labels import Label
from medrecon.labels.terminology import GENERIC_TYPE, describe_labels, lookup

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct-abdomen"
ALL = [(task, mode) for task in task_names() for mode in tasks._table()["tasks"][task]["modes"]]

# value -> name in TotalSegmentator's global "total" numbering
TOTAL_FACTS = {
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    5: "liver",
    10: "lung_upper_lobe_left",
    21: "urinary_bladder",
    25: "sacrum",
    26: "vertebrae_S1",
    50: "vertebrae_C1",
    51: "heart",
    52: "aorta",
    63: "inferior_vena_cava",
    79: "spinal_cord",
    90: "brain",
    91: "skull",
    92: "rib_left_1",
    115: "rib_right_12",
    116: "sternum",
    117: "costal_cartilages",
}


def test_total_has_117_classes_at_their_public_numbers() -> None:
    spec = task_spec("total")
    assert sorted(spec.classes) == list(range(1, 118))
    for value, name in TOTAL_FACTS.items():
        assert spec.classes[value] == name


def test_total_parts_are_datasets_291_to_295() -> None:
    spec = task_spec("total")
    assert [p.dataset_id for p in spec.parts] == [291, 292, 293, 294, 295]
    assert spec.parts[0].folder == "Dataset291_TotalSegmentator_part1_organs_1559subj"
    assert spec.parts[1].folder == "Dataset292_TotalSegmentator_part2_vertebrae_1532subj"
    assert {p.trainer_folder for p in spec.parts} == {
        "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
    }
    assert (spec.spacing, spec.step_size, spec.folds) == ((1.5, 1.5, 1.5), 0.8, (0,))
    assert [len(p.classes) for p in spec.parts] == [24, 26, 18, 23, 26]
    # part-local numbering: the vertebrae part's 1 is sacrum, the ribs part's 1 rib_left_1
    assert (spec.parts[1].classes[1], spec.parts[4].classes[1]) == ("sacrum", "rib_left_1")


def test_fast_modes_are_single_models() -> None:
    fast, fastest = task_spec("total", "fast"), task_spec("total", "fastest")
    assert [p.dataset_id for p in fast.parts] == [297]
    assert fast.parts[0].trainer == "nnUNetTrainer_4000epochs_NoMirroring"
    assert (fast.spacing[0], fastest.spacing[0], fastest.parts[0].dataset_id) == (3.0, 6.0, 298)
    assert fast.classes == task_spec("total").classes == dict(fast.parts[0].classes)
    mr = task_spec("total_mr")
    assert [p.dataset_id for p in mr.parts] == [850, 851] and mr.modality == "MR"
    assert len(mr.classes) == 50 and mr.classes[19] == "vertebrae"
    assert [p.dataset_id for p in task_spec("total_mr", "fast").parts] == [852]


@pytest.mark.parametrize(("task", "mode"), ALL)
def test_every_part_maps_into_the_task_without_duplicates(task: str, mode: str) -> None:
    spec = task_spec(task, mode)
    names = list(spec.classes.values())
    assert len(names) == len(set(names)), "a class name repeats"
    assert sorted(spec.classes) == list(range(1, len(names) + 1))
    claimed = [name for part in spec.parts for name in part.classes.values()]
    assert len(claimed) == len(set(claimed)), "two parts share a class"
    assert sorted(claimed) == sorted(names), "the parts do not cover the task's classes"
    for part in spec.parts:
        assert sorted(part.classes) == list(range(1, len(part.classes) + 1))
        assert part.folder.startswith(f"Dataset{part.dataset_id:03d}_")
    assert spec.modality in ("CT", "MR") and spec.download


@pytest.mark.parametrize(("task", "mode"), ALL)
def test_every_class_name_is_coded(task: str, mode: str) -> None:
    spec = task_spec(task, mode)
    labels, warnings = describe_labels(sorted(spec.classes.items()), source=spec.spec)
    assert warnings == []
    for label in labels:
        assert lookup(label.name) is not None, label.name
        assert label.type is not None and label.type != GENERIC_TYPE, label.name
        assert label.category is not None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("totalsegmentator:total", ("total", "default")),
        ("total", ("total", "default")),
        ("totalsegmentator:total:fast", ("total", "fast")),
        ("TotalSegmentator:total_mr:fastest", ("total_mr", "fastest")),
        (" totalsegmentator:vertebrae_mr ", ("vertebrae_mr", "default")),
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected
    task, mode = expected
    assert parse_spec(task_spec(task, mode).spec) == expected


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("totalsegmentator:total_fast", "totalsegmentator:total:fast"),
        ("total_fast_mr", "totalsegmentator:total_mr:fast"),
        ("total --fastest", "totalsegmentator:total:fastest"),
        ("totalsegmentator:liver_vessels", "medrecon runs total, total_mr"),
        ("totalsegmentator:breasts:fast", "no mode 'fast'"),
    ],
)
def test_parse_spec_errors_say_what_to_write(spec: str, hint: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_spec(spec)
    assert hint in str(info.value)


def test_installed_totalsegmentator_class_maps_take_precedence(monkeypatch) -> None:
    """An installed TotalSegmentator's map_to_binary wins over the shipped table."""
    table = tasks._table()
    total = {int(k): v for k, v in table["classes"]["total"].items()}
    total[117] = "costal_cartilage_renamed"
    parts = {}
    for dataset_id in table["tasks"]["total"]["modes"]["default"]["datasets"]:
        entry = table["datasets"][str(dataset_id)]
        part = {int(k): v for k, v in entry["classes"].items()}
        parts[entry["part"]] = {
            k: total[117] if v == "costal_cartilages" else v for k, v in part.items()
        }
    package = types.ModuleType("totalsegmentator")
    module = types.ModuleType("totalsegmentator.map_to_binary")
    module.class_map = {"total": total}
    module.class_map_5_parts = parts
    package.map_to_binary = module
    monkeypatch.setitem(sys.modules, "totalsegmentator", package)
    monkeypatch.setitem(sys.modules, "totalsegmentator.map_to_binary", module)
    spec = task_spec("total")
    assert spec.classes[117] == "costal_cartilage_renamed"
    assert "installed" in spec.class_source
    # a task that package lacks falls back to the table
    assert task_spec("total_mr").class_source.startswith("medrecon")


def test_dicom_seg_writer_takes_every_totalsegmentator_label(tmp_path) -> None:
    """All 117 coded labels of total go into one DICOM SEG, codes and colours intact."""
    highdicom = pytest.importorskip("highdicom")
    import medrecon.io as mio
    from medrecon.export.dicomseg import write_dicom_seg

    spec = task_spec("total")
    labels, _ = describe_labels(sorted(spec.classes.items()))
    source = mio.load(SAMPLE)
    array = np.zeros(source.spatial_shape, dtype=np.uint8)
    for label in labels:  # one small block per label, on distinct slices
        k = (label.value - 1) % source.spatial_shape[2]
        i = 4 * ((label.value - 1) // source.spatial_shape[2])
        array[i : i + 3, 10:13, k] = label.value
    path = write_dicom_seg(
        tmp_path / "seg.dcm", source.with_array(array), labels, source, pipeline_name=spec.spec
    )
    seg = highdicom.seg.segread(path)
    assert len(seg.SegmentSequence) == 117
    by_label = {item.SegmentLabel: item for item in seg.SegmentSequence}
    rib = by_label["rib_left_1"].SegmentedPropertyTypeCodeSequence[0]
    assert (rib.CodeValue, rib.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue) == (
        "48535007",
        "7771000",
    )
    cyst = by_label["kidney_cyst_left"].SegmentedPropertyCategoryCodeSequence[0]
    assert cyst.CodeValue == "49755003"
    assert isinstance(labels[0], Label)
