"""Slicer .seg.nrrd: write then read back with medrecon's reader and with slicerio."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import nrrd
import numpy as np
import pytest
import slicerio

from medrecon.errors import InputError
from medrecon.export.segnrrd import read_seg_nrrd, write_seg_nrrd
from medrecon.io.nifti import read_nifti
from medrecon.labels import Label
from medrecon.labels.terminology import TISSUE, describe
from medrecon.volume import Volume

SLICERIO_DATA = Path(slicerio.__file__).parent / "data"


def _as_written(label: Label) -> Label:
    """A label as the file codes it: one without a type gets Slicer's generic Tissue."""
    if label.type is not None:
        return label
    return dataclasses.replace(label, category=TISSUE, type=TISSUE, type_modifier=None)


def _ct_labels(shared_data: Path) -> tuple[Volume, list[Label]]:
    folder = shared_data / "ct-abdomen"
    names = json.loads((folder / "labels.json").read_text())
    table = [describe(name, int(value)) for value, name in names.items()]
    return read_nifti(folder / "labels.nii.gz"), table


def _rotation(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


def _affines() -> dict[str, np.ndarray]:
    spacing = np.diag([0.8, 1.1, 2.5])
    ras = np.eye(4)
    ras[:3, :3] = spacing
    ras[:3, 3] = (-120.5, 30.25, -400.0)
    lps = ras.copy()
    lps[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ spacing  # i runs to the left, j to posterior
    oblique = ras.copy()
    oblique[:3, :3] = _rotation(np.radians(12.0), np.radians(31.0)) @ spacing
    return {"ras": ras, "lps": lps, "oblique": oblique}


def test_ct_abdomen_round_trip(shared_data, tmp_path):
    labels, table = _ct_labels(shared_data)
    path = write_seg_nrrd(tmp_path / "segmentation.seg.nrrd", labels, table)
    assert [p.name for p in tmp_path.iterdir()] == ["segmentation.seg.nrrd"]  # no temp left

    back, back_table = read_seg_nrrd(path)
    np.testing.assert_array_equal(back.array, labels.array)
    np.testing.assert_allclose(back.affine, labels.affine, atol=1e-9)
    present = {int(v) for v in np.unique(labels.array) if v}
    expected = sorted((lab for lab in table if lab.value in present), key=lambda lab: lab.value)
    assert list(back_table) == [_as_written(lab) for lab in expected]  # names, colours, codes

    seg = slicerio.read_segmentation(str(path))
    np.testing.assert_array_equal(seg["voxels"], labels.array)
    np.testing.assert_allclose(seg["ijkToLPS"], labels.lps_affine, atol=1e-9)
    assert seg["containedRepresentationNames"] == ["Binary labelmap", "Closed surface"]
    by_name = {s["name"]: s for s in seg["segments"]}
    for label in expected:
        segment = by_name[label.name]
        assert segment["labelValue"] == label.value
        assert segment["layer"] == 0
        np.testing.assert_allclose(np.array(segment["color"]) * 255, label.color, atol=0.01)
        code = _as_written(label).type
        assert segment["terminology"]["type"] == [code.scheme, code.value, code.meaning]
        ijk = np.argwhere(labels.array == label.value)
        box = np.column_stack([ijk.min(axis=0), ijk.max(axis=0)]).ravel()
        assert segment["extent"] == box.tolist()


def test_liver_terminology_string_is_slicers(shared_data, tmp_path):
    labels, table = _ct_labels(shared_data)
    path = write_seg_nrrd(tmp_path / "s.seg.nrrd", labels, table)
    _, header = nrrd.read(str(path))
    liver = next(
        k[: -len("_Name")] for k, v in header.items() if k.endswith("_Name") and v == "liver"
    )
    assert header[f"{liver}_Tags"] == (
        "TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list"
        "~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^"
        "~Anatomic codes - DICOM master list~^^~^^|"
    )
    assert header["space"] == "left-posterior-superior"
    assert header["encoding"] == "gzip"
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"


@pytest.mark.parametrize("kind", ["ras", "lps", "oblique"])
def test_geometry_round_trip(shared_data, tmp_path, kind):
    labels, table = _ct_labels(shared_data)
    crop = np.ascontiguousarray(labels.array[20:80, 10:70, 40:100])
    vol = Volume(crop, _affines()[kind])
    path = write_seg_nrrd(tmp_path / f"{kind}.seg.nrrd", vol, table)

    _, header = nrrd.read(str(path))
    # NRRD space directions are one row per axis, in LPS.
    np.testing.assert_allclose(header["space directions"], vol.lps_affine[:3, :3].T, atol=1e-12)
    np.testing.assert_allclose(header["space origin"], vol.lps_affine[:3, 3], atol=1e-12)
    back, _ = read_seg_nrrd(path)
    np.testing.assert_array_equal(back.array, crop)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)
    seg = slicerio.read_segmentation(str(path))
    np.testing.assert_allclose(seg["ijkToLPS"], vol.lps_affine, atol=1e-12)


def test_only_present_labels_become_segments(tmp_path):
    array = np.zeros((6, 5, 4), dtype=np.uint8)
    array[1:3, 1:4, 2] = 2
    table = [describe("liver", 1), describe("spleen", 2), describe("aorta", 3)]
    path = write_seg_nrrd(tmp_path / "s.seg.nrrd", Volume(array, np.eye(4)), table)
    _, back_table = read_seg_nrrd(path)
    assert [lab.name for lab in back_table] == ["spleen"]
    segment = slicerio.read_segmentation(str(path))["segments"][0]
    assert segment["extent"] == [1, 2, 1, 3, 2, 2]


def test_large_label_values_and_unknown_names(tmp_path):
    array = np.zeros((4, 4, 4), dtype=np.uint16)
    array[0, 0, 0] = 300
    array[3, 3, 3] = 7
    table = [Label(300, "lesion", (10, 20, 30)), Label(7, "cyst", (250, 251, 252))]
    path = write_seg_nrrd(tmp_path / "s.seg.nrrd", Volume(array, np.eye(4)), table)
    back, back_table = read_seg_nrrd(path)
    np.testing.assert_array_equal(back.array, array)
    assert {lab.value: (lab.name, lab.color, lab.type) for lab in back_table} == {
        7: ("cyst", (250, 251, 252), TISSUE),
        300: ("lesion", (10, 20, 30), TISSUE),
    }
    with pytest.raises(InputError, match=r"\[7\]"):
        write_seg_nrrd(tmp_path / "t.seg.nrrd", Volume(array, np.eye(4)), table[:1])


def test_closed_surface_can_be_left_out(tmp_path):
    array = np.zeros((3, 3, 3), dtype=np.uint8)
    array[1, 1, 1] = 1
    path = write_seg_nrrd(
        tmp_path / "s.seg.nrrd",
        Volume(array, np.eye(4)),
        [describe("liver", 1)],
        closed_surface=False,
    )
    seg = slicerio.read_segmentation(str(path), skip_voxels=True)
    assert seg["containedRepresentationNames"] == ["Binary labelmap"]


def test_reads_slicerio_single_layer_sample():
    path = SLICERIO_DATA / "Segmentation.seg.nrrd"
    vol, table = read_seg_nrrd(path)
    seg = slicerio.read_segmentation(str(path))
    np.testing.assert_array_equal(vol.array, seg["voxels"])
    np.testing.assert_allclose(vol.lps_affine, seg["ijkToLPS"], atol=1e-9)
    assert [lab.name for lab in table] == [s["name"] for s in seg["segments"]]
    right_lung = next(lab for lab in table if lab.name == "right lung")
    assert right_lung.value == 5
    assert right_lung.color == (22, 197, 71)  # 0.0862745 0.772549 0.278431
    assert (right_lung.type.value, right_lung.type_modifier.meaning) == ("39607008", "Right")


def test_reads_slicerio_overlapping_sample(caplog):
    path = SLICERIO_DATA / "SegmentationOverlapping.seg.nrrd"
    seg = slicerio.read_segmentation(str(path))
    with caplog.at_level(logging.WARNING, logger="medrecon.export.segnrrd"):
        vol, table = read_seg_nrrd(path)
    # Label value 1 is used in both layers, so segments are renumbered 1..8 in file order.
    assert [lab.value for lab in table] == list(range(1, 9))
    assert table[7].name == "overlapping sphere"
    sphere = seg["voxels"][1] == 1
    np.testing.assert_array_equal(vol.array[sphere], 8)  # the later segment wins
    rest = ~sphere
    np.testing.assert_array_equal(vol.array[rest], seg["voxels"][0][rest])
    assert any("overlapping sphere" in r.getMessage() for r in caplog.records)
    assert any("overlapping sphere" in w for w in vol.meta.warnings)


def test_empty_label_map_gives_a_segmentation_without_segments(tmp_path):
    affine = _affines()["oblique"]
    path = write_seg_nrrd(
        tmp_path / "e.seg.nrrd",
        Volume(np.zeros((5, 6, 7), np.uint8), affine),
        [describe("liver", 1)],
    )
    back, table = read_seg_nrrd(path)
    assert table == ()
    assert back.shape == (5, 6, 7)
    assert not back.array.any()
    np.testing.assert_allclose(back.affine, affine, atol=1e-12)
    assert slicerio.read_segmentation(str(path), skip_voxels=True)["segments"] == []
