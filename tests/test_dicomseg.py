"""DICOM SEG export: written with highdicom, read back by highdicom and by dcmqi.

Masks are compared by patient position: every SEG frame's Image Position (Patient)
is mapped back to a slice index of the label Volume, so a frame placed on the wrong
plane (or a flipped row/column order) fails, not just a wrong voxel count.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

import medrecon.io as mio
from medrecon.errors import InputError
from medrecon.export.dicomseg import write_dicom_seg
from medrecon.labels import Code, Label
from medrecon.labels.terminology import describe
from medrecon.volume import Volume

TISSUE = Code("85756007", "SCT", "Tissue")
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct-abdomen"


def labels_on_grid(nifti: Path, grid: Volume) -> np.ndarray:
    """A label NIfTI resampled onto ``grid`` by nearest voxel (exact for signed permutations)."""
    image = nib.load(nifti)
    to_nifti = np.linalg.inv(image.affine) @ grid.affine
    ijk = np.indices(grid.spatial_shape).reshape(3, -1)
    src = to_nifti[:3, :3] @ ijk + to_nifti[:3, 3:4]
    assert np.allclose(src, np.rint(src), atol=1e-3), "grids do not share voxel centres"
    return np.asarray(image.dataobj)[tuple(np.rint(src).astype(int))].reshape(grid.spatial_shape)


def seg_to_labels(seg: hd.seg.Segmentation, grid: Volume, values: list[int]) -> np.ndarray:
    """Rebuild a label map on ``grid`` from the SEG frames, placed by their plane positions."""
    out = np.zeros(grid.spatial_shape, dtype=np.int32)
    to_voxel = np.linalg.inv(grid.lps_affine)
    shared = seg.SharedFunctionalGroupsSequence[0]
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence, strict=True):
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        i, j, k = to_voxel[:3, :3] @ position + to_voxel[:3, 3]
        assert abs(i) < 1e-3 and abs(j) < 1e-3 and abs(k - round(k)) < 1e-3, (i, j, k)
        # with one segment, highdicom puts its identification in the shared groups
        ident = item if "SegmentIdentificationSequence" in item else shared
        number = int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        plane = out[:, :, round(k)]
        mask = frame.T.astype(bool)  # frame is (rows=j, columns=i)
        assert not np.any(plane[mask]), "segments overlap"
        plane[mask] = values[number - 1]
    return out


@pytest.fixture(scope="module")
def sample_study(shared_data):
    """The sample CT, its TotalSegmentator labels on the DICOM grid, and the label table."""
    source = mio.load(SAMPLE)
    data = shared_data / "ct-abdomen"
    names = json.loads((data / "labels.json").read_text())
    table = tuple(describe(name, int(value)) for value, name in names.items())
    labels = source.with_array(labels_on_grid(data / "labels.nii.gz", source))
    return source, labels, table


@pytest.fixture(scope="module")
def sample_seg(sample_study, tmp_path_factory):
    source, labels, table = sample_study
    path = tmp_path_factory.mktemp("seg") / "seg.dcm"
    write_dicom_seg(path, labels, table, source, pipeline_name="abdomen-ct", pipeline_version="2")
    return path


def test_plain_series_masks_match_labels_by_position(sample_study, sample_seg):
    _, labels, _ = sample_study
    seg = hd.seg.segread(sample_seg)
    present = [int(v) for v in np.unique(labels.array) if v]
    assert int(seg.NumberOfFrames) > 0
    assert seg.SegmentationType == "BINARY"
    np.testing.assert_array_equal(seg_to_labels(seg, labels, present), labels.array)


def test_plain_series_frames_reference_the_source_image_at_their_plane(sample_study, sample_seg):
    source, _, _ = sample_study
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in source.meta.source_files]
    by_position = {tuple(np.round(h.ImagePositionPatient, 3)): h.SOPInstanceUID for h in headers}
    seg = hd.seg.segread(sample_seg)
    for item in seg.PerFrameFunctionalGroupsSequence:
        position = tuple(np.round(item.PlanePositionSequence[0].ImagePositionPatient, 3))
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == by_position[position]
        assert ref.SpatialLocationsPreserved == "YES"


def test_segments_carry_names_codes_colours_and_algorithm(sample_study, sample_seg):
    _, labels, table = sample_study
    seg = hd.seg.segread(sample_seg)
    present = [label for label in table if np.any(labels.array == label.value)]
    assert len(seg.SegmentSequence) == len(present) == 59
    for number, (item, label) in enumerate(zip(seg.SegmentSequence, present), start=1):
        assert item.SegmentNumber == number
        assert item.SegmentLabel == label.name
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        kind = item.SegmentedPropertyTypeCodeSequence[0]
        expected_category = label.category if label.type else TISSUE
        expected_type = label.type or TISSUE
        assert (category.CodeValue, category.CodingSchemeDesignator) == (
            expected_category.value,
            expected_category.scheme,
        )
        assert (kind.CodeValue, kind.CodeMeaning) == (expected_type.value, expected_type.meaning)
        if label.type_modifier is not None:
            modifier = kind.SegmentedPropertyTypeModifierCodeSequence[0]
            assert modifier.CodeValue == label.type_modifier.value
        rgb = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb()
        assert np.max(np.abs(np.subtract(rgb, label.color))) <= 1, (label.name, rgb)
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("abdomen-ct", "2")
    kidney = next(item for item in seg.SegmentSequence if item.SegmentLabel == "kidney_left")
    modifier = kidney.SegmentedPropertyTypeCodeSequence[0]
    assert modifier.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Left"


def test_references_source_series_study_and_frame_of_reference(sample_study, sample_seg):
    source, _, _ = sample_study
    seg = hd.seg.segread(sample_seg)
    assert seg.StudyInstanceUID == source.meta.study_uid
    assert seg.FrameOfReferenceUID == source.meta.frame_of_reference_uid
    assert seg.SeriesInstanceUID != source.meta.series_uid
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == source.meta.series_uid
    assert len(referenced.ReferencedInstanceSequence) == len(source.meta.source_files)
    assert seg.Manufacturer == "medrecon"
    assert seg.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


@pytest.mark.skipif(shutil.which("segimage2itkimage") is None, reason="dcmqi is not installed")
def test_dcmqi_reads_the_seg_back_to_the_same_labels(sample_study, sample_seg, tmp_path):
    _, labels, table = sample_study
    subprocess.run(
        [
            "segimage2itkimage",
            "--inputDICOM",
            str(sample_seg),
            "--outputDirectory",
            str(tmp_path),
            "-t",
            "nifti",
            "--mergeSegments",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    meta = json.loads((tmp_path / "meta.json").read_text())
    segment_to_value = {
        int(s["labelID"]): next(label.value for label in table if label.name == s["SegmentLabel"])
        for s in meta["segmentAttributes"][0]
    }
    read_back = labels_on_grid(tmp_path / "1.nii.gz", labels)
    lut = np.zeros(max(segment_to_value) + 1, dtype=np.int32)
    for number, value in segment_to_value.items():
        lut[number] = value
    np.testing.assert_array_equal(lut[read_back], labels.array)


@pytest.mark.parametrize("series", ["ct-philips-tilt", "ct-ge-tilt-uneven"])
def test_resampled_volume_writes_its_own_planes(shared_data, tmp_path, series):
    source = mio.load(shared_data / "dicom" / series)
    assert source.meta.gantry_tilt_deg != 0  # the loader resampled these
    array = np.zeros(source.spatial_shape, dtype=np.uint8)
    array[100:200, 150:300, 5:20] = 1
    array[300:350, 200:260, 15:40] = 3
    labels = source.with_array(array)
    table = (describe("liver", 1), describe("spleen", 2), describe("kidney_left", 3))
    path = write_dicom_seg(tmp_path / "seg.dcm", labels, table, source)
    seg = hd.seg.segread(path)
    np.testing.assert_array_equal(seg_to_labels(seg, labels, [1, 3]), array)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "kidney_left"]
    assert (seg.Rows, seg.Columns) == source.spatial_shape[1::-1]
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    unit_normal = np.cross(*np.reshape(
        seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
        (2, 3),
    ))  # fmt: skip
    assert float(measures.SpacingBetweenSlices) == pytest.approx(
        abs(source.lps_affine[:3, 2] @ unit_normal), abs=1e-6
    )
    assert seg.FrameOfReferenceUID == source.meta.frame_of_reference_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.meta.series_uid
    for item in seg.PerFrameFunctionalGroupsSequence:
        for ref in getattr(item, "DerivationImageSequence", []):
            assert ref.SourceImageSequence[0].SpatialLocationsPreserved != "YES"


def _box_labels(source: Volume) -> Volume:
    array = np.zeros(source.spatial_shape, dtype=np.uint8)
    array[40:60, 40:60, 50:60] = 1
    return source.with_array(array)


LIVER = Label(1, "liver", (221, 130, 101), None, Code("10200004", "SCT", "Liver"))


def test_missing_source_file_is_a_clear_error(tmp_path):
    study = tmp_path / "study"
    shutil.copytree(SAMPLE, study)
    source = mio.load(study)
    Path(source.meta.source_files[3]).unlink()
    # Given as files, the sources are read from disk (a loaded Volume carries its headers).
    with pytest.raises(InputError, match=r"missing.*--no-dicom-seg") as error:
        write_dicom_seg(
            tmp_path / "seg.dcm", _box_labels(source), (LIVER,), source.meta.source_files
        )
    assert source.meta.source_files[3] in str(error.value)
    assert not list(tmp_path.glob("*seg*"))  # nothing half-written


def test_loaded_volume_needs_no_source_file_to_write_its_seg(tmp_path):
    study = tmp_path / "study"
    shutil.copytree(SAMPLE, study)
    source = mio.load(study)
    shutil.rmtree(study)  # the SEG writer opens no input file: the headers came with the load
    derived = source.with_array(source.array.copy())  # copies of a Volume share its headers
    seg = hd.seg.segread(
        write_dicom_seg(tmp_path / "seg.dcm", _box_labels(source), (LIVER,), derived)
    )
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == source.meta.series_uid
    assert len(referenced.ReferencedInstanceSequence) == len(source.meta.source_files)
    assert int(seg.NumberOfFrames) == 10


def test_unreadable_or_absent_sources_and_unknown_labels_are_errors(tmp_path):
    source = mio.load(SAMPLE)
    labels = _box_labels(source)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom file")
    with pytest.raises(InputError, match="cannot be read"):
        write_dicom_seg(tmp_path / "seg.dcm", labels, (LIVER,), [bad])
    with pytest.raises(InputError, match="no source DICOM files"):
        write_dicom_seg(tmp_path / "seg.dcm", labels, (LIVER,), [])
    labels.array[0, 0, 0] = 7
    with pytest.raises(InputError, match=r"values \[7\]"):
        write_dicom_seg(tmp_path / "seg.dcm", labels, (LIVER,), source)
    assert not (tmp_path / "seg.dcm").exists()


def test_label_without_codes_is_described_as_tissue(tmp_path):
    source = mio.load(SAMPLE)
    plain = Label(1, "lesion", (10, 200, 30))
    seg = hd.seg.segread(write_dicom_seg(tmp_path / "s.dcm", _box_labels(source), (plain,), source))
    item = seg.SegmentSequence[0]
    assert item.SegmentLabel == "lesion"
    assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"
    assert int(seg.NumberOfFrames) == 10  # empty frames are omitted


@pytest.mark.parametrize("folder", ["Philips", "Siemens/XA10"])
def test_enhanced_multiframe_source_with_per_frame_geometry(shared_data, tmp_path, folder):
    # orientation and pixel measures are per frame in these files; XA10 is 4 files (time)
    source = mio.load_all(shared_data / "dicom" / "enhanced-multiframe" / "in" / folder)[0]
    array = np.zeros(source.spatial_shape, dtype=np.uint8)
    array[10:30, 20:40, 1:4] = 1
    labels = source.with_array(array)
    seg = hd.seg.segread(write_dicom_seg(tmp_path / "seg.dcm", labels, (LIVER,), source))
    np.testing.assert_array_equal(seg_to_labels(seg, labels, [1]), array)
    (referenced,) = seg.ReferencedSeriesSequence
    assert len(referenced.ReferencedInstanceSequence) == len(source.meta.source_files)
    for item in seg.PerFrameFunctionalGroupsSequence:
        refs = item.DerivationImageSequence[0].SourceImageSequence
        assert refs and all(ref.SpatialLocationsPreserved == "YES" for ref in refs)


def test_source_series_highdicom_refuses_is_an_input_error(tmp_path):
    source = mio.load(SAMPLE)
    files = []
    for n, name in enumerate(source.meta.source_files[:3]):
        ds = pydicom.dcmread(name)
        if n == 1:
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # one sagittal slice in the series
        ds.save_as(tmp_path / f"{n}.dcm")
        files.append(tmp_path / f"{n}.dcm")
    with pytest.raises(InputError, match=r"cannot build a DICOM SEG.*--no-dicom-seg"):
        write_dicom_seg(tmp_path / "seg.dcm", _box_labels(source), (LIVER,), files)
    assert not (tmp_path / "seg.dcm").exists()
