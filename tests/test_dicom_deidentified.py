"""De-identified DICOM: SeriesInstanceUID, StudyInstanceUID, SOPInstanceUID and SOPClassUID
blanked (present, empty) or removed, as many anonymisation tools leave them.

Cases are copies of real series (``../shared/data/dicom/ct-philips-axial`` and the
project's own ``sample_data/ct-abdomen``) edited with pydicom. The expected volumes
are exact: those loaded from the untouched files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_synth import slice_files

import medrecon
from medrecon.cli.main import main
from medrecon.errors import DuplicateSliceError
from medrecon.export.dicomseg import write_dicom_seg
from medrecon.io import read, scan
from medrecon.io.dicom.uids import UID_KEYWORDS
from medrecon.labels.terminology import describe

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct-abdomen"
N_SLICES = 28


@pytest.fixture(scope="module")
def source(shared_data: Path) -> Path:
    return shared_data / "dicom" / "ct-philips-axial"


@pytest.fixture(scope="module")
def original(source: Path):
    return medrecon.load(source)


def deidentify(
    src: Path, dst: Path, *, mode: str = "blank", keys=UID_KEYWORDS, prefix: str = "", edit=None
) -> list[Path]:
    """Copy the slices of ``src`` to ``dst`` with ``keys`` blanked or removed (and the
    file meta's instance UID with them); ``edit(ds)`` may change more. Returns the files."""
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for path in slice_files(src):
        ds = pydicom.dcmread(path)
        for key in keys:
            if mode == "blank":
                ds[key].value = ""
            else:
                del ds[key]
        if "SOPInstanceUID" in keys:
            ds.file_meta.MediaStorageSOPInstanceUID = ""
        if edit is not None:
            edit(ds)
        target = dst / f"{prefix}{path.name}"
        ds.save_as(target, enforce_file_format=False)
        out.append(target)
    return out


def _same(volume, reference) -> None:
    assert volume.shape == reference.shape
    np.testing.assert_array_equal(volume.array, reference.array)
    np.testing.assert_array_equal(volume.affine, reference.affine)


def _fallback_warnings(volume) -> list[str]:
    return [w for w in volume.meta.warnings if "blank or missing" in w]


@pytest.mark.parametrize("mode", ["blank", "remove"])
def test_series_without_uids_loads_with_a_warning(source, original, tmp_path, mode):
    deidentify(source, tmp_path / "in", mode=mode)
    result = read(tmp_path / "in")
    assert result.skipped == []
    (volume,) = result.volumes
    _same(volume, original)
    (warning,) = _fallback_warnings(volume)
    for key in UID_KEYWORDS:
        assert key in warning
    assert "SeriesNumber" in warning and "FrameOfReferenceUID" in warning
    assert volume.meta.series_uid.startswith("2.25.") and len(volume.meta.series_uid) <= 64
    assert volume.meta.series_uid in warning
    assert volume.meta.study_uid is None
    assert volume.meta.series_number == original.meta.series_number
    # The scan report and `medrecon info` say so too.
    (summary,) = scan(tmp_path / "in").series
    assert summary.series_uid == volume.meta.series_uid
    assert any("blank or missing SeriesInstanceUID" in w for w in summary.warnings)


def test_convert_sidecar_says_which_uids_were_missing(source, original, tmp_path):
    deidentify(source, tmp_path / "in", keys=("SeriesInstanceUID", "SOPInstanceUID"))
    assert main(["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 0
    (sidecar,) = (tmp_path / "out").glob("*.json")
    meta = json.loads(sidecar.read_text())
    assert meta["MissingUIDs"] == ["SeriesInstanceUID", "SOPInstanceUID"]
    assert meta["SeriesInstanceUIDDerived"] is True
    assert meta["SeriesInstanceUID"] != original.meta.series_uid
    assert meta["StudyInstanceUID"] == original.meta.study_uid  # kept: it was not blanked
    assert main(["convert", str(source), "-o", str(tmp_path / "plain")]) == 0
    (plain,) = (tmp_path / "plain").glob("*.json")
    plain_meta = json.loads(plain.read_text())
    assert plain_meta["MissingUIDs"] == [] and plain_meta["SeriesInstanceUIDDerived"] is False


def test_info_prints_the_fallback(source, tmp_path, capsys):
    deidentify(source, tmp_path / "in")
    assert main(["info", str(tmp_path / "in")]) == 0
    out = capsys.readouterr().out
    assert "blank or missing SeriesInstanceUID" in out and "derived" in out


def test_derived_series_uid_is_the_same_every_run_and_place(source, tmp_path):
    deidentify(source, tmp_path / "a", mode="blank")
    deidentify(source, tmp_path / "b", mode="remove")
    uids = {read(tmp_path / name).volumes[0].meta.series_uid for name in ("a", "b", "a")}
    assert len(uids) == 1  # blank and removed count alike; no path enters the key
    (tmp_path / "a").rename(tmp_path / "moved")
    assert read(tmp_path / "moved").volumes[0].meta.series_uid in uids


def _set(**values):
    def edit(ds):
        for key, value in values.items():
            setattr(ds, key, value)

    return edit


@pytest.mark.parametrize(
    "change",
    [
        {"SeriesNumber": 202, "SeriesDescription": "second"},
        {"SeriesTime": "235959"},
        {"FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.1"},
    ],
    ids=["number+description", "series-time", "frame-of-reference"],
)
def test_two_series_that_differ_in_a_fallback_key_stay_apart(source, original, tmp_path, change):
    deidentify(source, tmp_path / "in", prefix="a_")
    deidentify(source, tmp_path / "in", prefix="b_", edit=_set(**change))
    volumes = read(tmp_path / "in").volumes
    assert len(volumes) == 2
    assert len({v.meta.series_uid for v in volumes}) == 2
    for volume in volumes:
        _same(volume, original)
        assert len(volume.meta.source_files) == N_SLICES
        assert len({Path(f).name[0] for f in volume.meta.source_files}) == 1


def test_real_uids_are_grouped_as_before_beside_blanked_ones(source, original, tmp_path):
    files = deidentify(source, tmp_path / "in", prefix="anon_")
    for path in slice_files(source):
        shutil.copyfile(path, tmp_path / "in" / path.name)
    volumes = read(tmp_path / "in").volumes
    assert len(volumes) == 2
    real = [v for v in volumes if v.meta.series_uid == original.meta.series_uid]
    (anon,) = [v for v in volumes if v is not real[0]]
    assert real[0].meta.warnings == [] and real[0].meta.study_uid == original.meta.study_uid
    assert sorted(anon.meta.source_files) == sorted(str(f) for f in files)
    _same(real[0], original)
    _same(anon, original)


def test_only_the_study_uid_blank(source, original, tmp_path):
    deidentify(source, tmp_path / "in", keys=("StudyInstanceUID",))
    volume = medrecon.load(tmp_path / "in")
    _same(volume, original)
    assert volume.meta.series_uid == original.meta.series_uid  # a real series UID is kept
    (warning,) = _fallback_warnings(volume)
    assert "StudyInstanceUID" in warning and "SeriesInstanceUID" not in warning


def test_copied_file_without_sop_uid_is_one_slice(source, original, tmp_path):
    files = deidentify(source, tmp_path / "in")
    copy = tmp_path / "in" / f"zz_copy_{files[10].name}"
    shutil.copyfile(files[10], copy)
    volume = medrecon.load(tmp_path / "in")
    _same(volume, original)
    assert str(copy) not in volume.meta.source_files
    assert any("duplicate slice" in w and str(copy) in w for w in volume.meta.warnings)
    # A copy with other pixels is still refused, naming both files.
    ds = pydicom.dcmread(copy)
    ds.PixelData = (ds.pixel_array + 1).astype(ds.pixel_array.dtype).tobytes()
    ds.save_as(copy, enforce_file_format=False)
    with pytest.raises(DuplicateSliceError, match="zz_copy_"):
        medrecon.load(tmp_path / "in")


def test_dicom_seg_references_generated_uids(source, tmp_path):
    deidentify(source, tmp_path / "in", keys=(*UID_KEYWORDS, "FrameOfReferenceUID"))
    volume = medrecon.load(tmp_path / "in")
    array = np.zeros(volume.spatial_shape, dtype=np.uint8)
    array[200:300, 180:260, 10:15] = 1
    labels = volume.with_array(array)
    notes: list[str] = []
    table = (describe("liver", 1),)
    path = write_dicom_seg(tmp_path / "seg.dcm", labels, table, volume, warnings_out=notes)
    (note,) = notes
    assert "generated" in note and volume.meta.series_uid in note
    seg = hd.seg.segread(path)
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == volume.meta.series_uid
    instances = [r.ReferencedSOPInstanceUID for r in referenced.ReferencedInstanceSequence]
    assert len(set(instances)) == N_SLICES and all(u.startswith("2.25.") for u in instances)
    assert {r.ReferencedSOPClassUID for r in referenced.ReferencedInstanceSequence} == {
        "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage, from the file meta
    }
    assert seg.StudyInstanceUID.startswith("2.25.")
    assert seg.FrameOfReferenceUID.startswith("2.25.")
    # Frames hold the mask at the right slices.
    assert int(seg.NumberOfFrames) == 5
    pixels = seg.pixel_array.reshape(5, seg.Rows, seg.Columns)
    assert int(pixels.sum()) == int(array.sum())
    # Generated again from the same files: the same UIDs.
    again = hd.seg.segread(write_dicom_seg(tmp_path / "seg2.dcm", labels, table, volume))
    assert [
        r.ReferencedSOPInstanceUID
        for r in again.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    ] == instances
    assert again.StudyInstanceUID == seg.StudyInstanceUID


def test_run_on_a_deidentified_study_writes_every_output(tmp_path):
    if not SAMPLE.is_dir():
        pytest.skip("sample_data/ct-abdomen is missing")
    deidentify(SAMPLE, tmp_path / "study")
    out = tmp_path / "out"
    # The pipeline file of this checkout (an installed package may ship another version).
    pipeline = SAMPLE.parents[1] / "pipelines" / "abdomen-ct.yaml"
    args = ["run", str(tmp_path / "study"), "-o", str(out), "--pipeline", str(pipeline)]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["input"]["series_uid"].startswith("2.25.")
    assert record["input"]["study_uid"] is None
    assert record["input"]["missing_uids"] == list(UID_KEYWORDS)
    for rel in record["outputs"]:
        assert (out / rel).is_file()
    assert "seg.dcm" in record["outputs"] and "labels.nii.gz" in record["outputs"]
    assert any("blank or missing SeriesInstanceUID" in w for w in record["warnings"])
    assert any("DICOM SEG" in w and "generated" in w for w in record["warnings"])
    seg = hd.seg.segread(out / "seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == record["input"]["series_uid"]
    assert {s.SegmentLabel for s in seg.SegmentSequence} == set(record["labels_found"])


def test_batch_splits_and_resumes_a_deidentified_dicom_folder(shared_data, ball_pipeline, tmp_path):
    """A flat folder of files without StudyInstanceUID is one study (split by the study-level
    keys), runs, and a second batch finds it complete under the same ID and series UID."""
    from dataclasses import replace

    from cohort_helpers import ct_block, read_cohort_csv

    from medrecon.cohort import (
        CohortSpec,
        EngineSettings,
        Reporting,
        StudySettings,
        discover_studies,
        run_cohort,
    )
    from medrecon.testing.dicom_series import write_ct_series

    array, affine = ct_block(shared_data)
    write_ct_series(array, affine, tmp_path / "series")
    flat = tmp_path / "flat"
    deidentify(tmp_path / "series", flat)
    (study,) = discover_studies(flat)
    assert study.id.startswith("2.25.") and len(study.files) == array.shape[2]
    assert [s.id for s in discover_studies(flat)] == [study.id]
    out = tmp_path / "out"
    inline = CohortSpec(StudySettings(model=ball_pipeline, device="cpu"), EngineSettings(workers=0))
    first = run_cohort(flat, out, inline)
    assert first.ok, [r.error for r in first.records]
    rows = read_cohort_csv(out / "cohort.csv")
    assert rows[study.id]["status"] == "complete"
    assert rows[study.id]["series_uid"].startswith("2.25.")
    events = []
    run_cohort(flat, out, replace(inline, reporting=Reporting(on_event=events.append)))
    assert [e.study for e in events if e.kind == "skip"] == [study.id]
    assert (
        read_cohort_csv(out / "cohort.csv")[study.id]["series_uid"] == rows[study.id]["series_uid"]
    )


def test_compressed_mosaic_without_uids(shared_data, tmp_path):
    """A JPEG 2000 file (the issue's study was JPEG 2000) with every UID blanked."""
    folder = shared_data / "dicom" / "transfer-syntaxes" / "in"
    ds = pydicom.dcmread(folder / "9.dcm")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    for key in UID_KEYWORDS:
        ds[key].value = ""
    ds.file_meta.MediaStorageSOPInstanceUID = ""
    ds.save_as(tmp_path / "anon.dcm", enforce_file_format=False)
    volume = medrecon.load(tmp_path / "anon.dcm")
    _same(volume, medrecon.load(folder / "1.dcm"))
    assert _fallback_warnings(volume)


def test_blank_sop_class_is_classified_by_modality(source, original, tmp_path):
    def no_class(ds):
        ds.file_meta.MediaStorageSOPClassUID = ""

    files = deidentify(source, tmp_path / "in", keys=("SOPClassUID",), edit=no_class)
    dose = pydicom.dcmread(files[0])
    dose.Modality = "RTDOSE"  # a dose grid has pixels and geometry, but is no image slice
    dose.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    dose.save_as(tmp_path / "in" / "dose.dcm", enforce_file_format=False)
    result = read(tmp_path / "in")
    (volume,) = result.volumes
    _same(volume, original)
    assert {Path(s.path).name: s.reason for s in result.skipped} == {
        "dose.dcm": "radiotherapy object (RT)"
    }
