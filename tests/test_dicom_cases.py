"""The DICOM loader on synthetic cases cut from one real series.

Every case starts from the 28 real axial CT slices in
``../shared/data/dicom/ct-philips-axial`` and edits copies of them with pydicom
(see ``dicom_synth``): shuffled names, duplicates, holes, rescale changes, a
second series, localizers and reports, damaged and foreign files, zip archives
and a DICOMDIR. The expected answers are exact: the volume loaded from the
untouched folder, or values and positions computed from pydicom directly.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_synth import (
    add_duplicate,
    add_foreign_files,
    add_non_image,
    add_second_series,
    build_dicomdir,
    copy_slices,
    garble_header,
    remove_slice,
    rescaled_copy,
    reversed_positions,
    sample_world_points,
    shuffled_copy,
    slice_files,
    truncate_pixel_data,
    unsafe_zip,
    zip_folder,
)

import medrecon
from medrecon.errors import (
    AmbiguousInputError,
    DuplicateSliceError,
    InputError,
    NoImageError,
    UnevenSpacingError,
    UnsafeArchiveError,
)
from medrecon.io import read
from medrecon.volume import Volume

N_SLICES = 28
MIDDLE = 14  # a slice with real neighbours on both sides
SEED = 20240601


@pytest.fixture(scope="module")
def source(shared_data: Path) -> Path:
    path = shared_data / "dicom" / "ct-philips-axial"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def files(source: Path) -> list[Path]:
    """The real slice files, ascending along the normal (index = k)."""
    out = slice_files(source)
    assert len(out) == N_SLICES
    return out


@pytest.fixture(scope="module")
def original(source: Path) -> Volume:
    """The volume loaded from the untouched folder: the reference for every case."""
    return medrecon.load(source)


def _assert_same_volume(volume: Volume, reference: Volume) -> None:
    assert volume.shape == reference.shape
    assert volume.array.dtype == reference.array.dtype
    np.testing.assert_array_equal(volume.array, reference.array)
    np.testing.assert_array_equal(volume.affine, reference.affine)


def _warnings_with(volume: Volume, word: str) -> list[str]:
    return [w for w in volume.meta.warnings if word in w.lower()]


def _skipped(result) -> dict[str, str]:
    return {s.path: s.reason for s in result.skipped}


def _assert_world_match(volume: Volume, slice_paths: list[Path], n: int, seed: int) -> None:
    """Random pixels land on integral voxels holding pixel * slope + intercept."""
    ras, values, where = sample_world_points(slice_paths, n, seed)
    ijk = volume.ras_to_voxel(ras)
    index = np.rint(ijk)
    worst = int(np.argmax(np.abs(ijk - index).max(axis=1)))
    assert np.abs(ijk - index).max() < 1e-4, f"{where[worst]} maps to voxel {ijk[worst]}"
    index = index.astype(int)
    assert np.all(index >= 0)
    assert np.all(index < np.array(volume.shape[:3]))
    got = volume.array[index[:, 0], index[:, 1], index[:, 2]]
    bad = np.flatnonzero(got != values)
    if bad.size:
        first = int(bad[0])
        pytest.fail(f"{bad.size} mismatches, e.g. {where[first]}: {got[first]} != {values[first]}")


# -- the reference itself ------------------------------------------------------------------
def test_original_series_is_clean(original: Volume, source: Path) -> None:
    assert original.shape == (512, 512, N_SLICES)
    assert original.array.dtype == np.int16
    assert original.meta.warnings == []
    result = read(source)
    assert len(result.volumes) == 1
    assert result.n_files == N_SLICES + 1  # + DIRFILE
    assert [Path(s.path).name for s in result.skipped] == ["DIRFILE"]
    assert "DICOMDIR" in result.skipped[0].reason


# 12. exact geometry against pydicom -----------------------------------------------------
def test_random_pixels_land_on_their_voxels(original: Volume, files: list[Path]) -> None:
    _assert_world_match(original, files, n=500, seed=SEED)


# 1. order never depends on names or InstanceNumber ---------------------------------------
def test_shuffled_renamed_series_loads_identically(
    source: Path, files: list[Path], original: Volume, tmp_path: Path
) -> None:
    copies = shuffled_copy(source, tmp_path, seed=SEED)
    names = {p.name for p in copies.values()}
    assert not names & {f.name for f in files}
    numbers = [
        int(pydicom.dcmread(copies[f], stop_before_pixels=True).InstanceNumber) for f in files
    ]
    assert sorted(numbers) == list(range(1, N_SLICES + 1))
    assert numbers != sorted(numbers) and numbers != sorted(numbers, reverse=True)

    result = read(tmp_path)
    assert result.skipped == []
    assert result.n_files == N_SLICES
    (volume,) = result.volumes
    _assert_same_volume(volume, original)
    assert volume.meta.warnings == []
    assert sorted(volume.meta.source_files) == sorted(str(p) for p in copies.values())


def test_descending_positions_give_positive_k_step(
    source: Path, files: list[Path], original: Volume, tmp_path: Path
) -> None:
    ascending = reversed_positions(source, tmp_path)  # I10 now highest, InstanceNumber 1
    first = pydicom.dcmread(ascending[-1], stop_before_pixels=True)
    assert first.InstanceNumber == 1

    volume = medrecon.load(tmp_path)
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
    normal_lps = np.cross(iop[:3], iop[3:])
    k_step_lps = volume.lps_affine[:3, 2]
    assert float(k_step_lps @ normal_lps) == pytest.approx(5.0, abs=1e-6)
    # Same positions as the original: same grid; content reversed along k.
    np.testing.assert_array_equal(volume.affine, original.affine)
    np.testing.assert_array_equal(volume.array, original.array[:, :, ::-1])
    _assert_world_match(volume, ascending, n=200, seed=SEED + 1)


# 2. duplicates ---------------------------------------------------------------------------
@pytest.mark.parametrize("new_uid", [False, True], ids=["same-uid", "new-uid"])
def test_duplicate_slice_with_same_pixels_is_dropped(
    source: Path, original: Volume, tmp_path: Path, new_uid: bool
) -> None:
    kept, dup = add_duplicate(source, tmp_path, MIDDLE, new_uid=new_uid)
    result = read(tmp_path)
    assert result.n_files == N_SLICES + 1
    (volume,) = result.volumes
    _assert_same_volume(volume, original)
    mentions = _warnings_with(volume, "duplicate")
    assert len(mentions) == 1, volume.meta.warnings
    assert str(dup) in mentions[0]
    assert str(dup) not in volume.meta.source_files
    assert str(kept) in volume.meta.source_files


@pytest.mark.parametrize("new_uid", [True, False], ids=["new-uid", "same-uid"])
def test_duplicate_position_with_other_pixels_raises(
    source: Path, tmp_path: Path, new_uid: bool
) -> None:
    kept, dup = add_duplicate(source, tmp_path, MIDDLE, new_uid=new_uid, change_pixels=True)
    with pytest.raises(DuplicateSliceError) as info:
        medrecon.load(tmp_path)
    message = str(info.value)
    assert str(kept) in message
    assert str(dup) in message
    assert "201" in message  # the series it happened in


# 3. missing slice ------------------------------------------------------------------------
def _assert_filled_hole(volume: Volume, original: Volume, hole: int) -> None:
    assert volume.shape == original.shape
    assert volume.array.dtype == original.array.dtype
    np.testing.assert_array_equal(volume.affine, original.affine)
    others = [k for k in range(N_SLICES) if k != hole]
    np.testing.assert_array_equal(volume.array[:, :, others], original.array[:, :, others])
    neighbours = original.array[:, :, [hole - 1, hole + 1]].astype(np.float64).mean(axis=2)
    assert np.abs(volume.array[:, :, hole] - neighbours).max() <= 1
    # The hole really was filled from its neighbours, not copied from the lost slice.
    assert not np.array_equal(volume.array[:, :, hole], original.array[:, :, hole])


def test_missing_slice_is_interpolated_on_the_same_grid(
    source: Path, original: Volume, tmp_path: Path
) -> None:
    kept, _removed = remove_slice(source, tmp_path, MIDDLE)
    volume = medrecon.load(tmp_path)
    _assert_filled_hole(volume, original, MIDDLE)
    assert len(_warnings_with(volume, "missing")) == 1, volume.meta.warnings
    assert sorted(volume.meta.source_files) == sorted(str(p) for p in kept)
    (summary,) = medrecon.scan(tmp_path).series
    assert summary.shape == (512, 512, N_SLICES)
    assert summary.n_slices == N_SLICES - 1
    assert any("missing" in w for w in summary.warnings)


def test_missing_slice_refused_when_asked(source: Path, tmp_path: Path) -> None:
    remove_slice(source, tmp_path, MIDDLE)
    with pytest.raises(UnevenSpacingError, match="missing"):
        medrecon.load(tmp_path, uneven="error")


# 4. per-slice rescale --------------------------------------------------------------------
def test_integral_rescale_changes_keep_values(
    source: Path, original: Volume, tmp_path: Path
) -> None:
    changes = {3: (2.0, -1024.0), 7: (1.0, -2048.0), 20: (2.0, -3000.0), 27: (1.0, 0.0)}
    rescaled_copy(source, tmp_path / "even", {}, even=True)
    changed = rescaled_copy(source, tmp_path / "changed", changes, even=True)
    for i, (slope, intercept) in changes.items():
        ds = pydicom.dcmread(changed[i], stop_before_pixels=True)
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (slope, intercept)
    assert pydicom.dcmread(changed[27]).PixelRepresentation == 1  # HU stored as signed

    even = medrecon.load(tmp_path / "even")
    volume = medrecon.load(tmp_path / "changed")
    # The even baseline is the original with the lowest stored bit cleared (intercept -1024).
    expected = ((original.array.astype(np.int32) + 1024) & ~1) - 1024
    np.testing.assert_array_equal(even.array, expected)
    assert volume.array.dtype == np.int16
    _assert_same_volume(volume, even)


def test_fractional_slope_gives_float_with_same_values(
    source: Path, original: Volume, tmp_path: Path
) -> None:
    changed = rescaled_copy(source, tmp_path, {5: (0.5, -1024.0), 6: (0.5, -1024.0)})
    doubled = pydicom.dcmread(changed[5]).pixel_array
    assert doubled.max() > 2000  # stored values really were doubled
    volume = medrecon.load(tmp_path)
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, original.array.astype(np.float32))
    np.testing.assert_array_equal(volume.affine, original.affine)


# 5. two series in one folder ------------------------------------------------------------
SHIFT_LPS = (10.0, -4.0, 200.0)


@pytest.fixture
def two_series(source: Path, tmp_path: Path) -> Path:
    add_second_series(
        source, tmp_path, series_number=301, description="COPY SHIFTED", shift_mm=SHIFT_LPS
    )
    return tmp_path


def _shifted_affine(original: Volume) -> np.ndarray:
    affine = original.affine.copy()
    affine[:3, 3] += np.array(SHIFT_LPS) * np.array([-1.0, -1.0, 1.0])
    return affine


def test_two_series_load_all(two_series: Path, original: Volume) -> None:
    volumes = medrecon.load_all(two_series)
    assert [v.meta.series_number for v in volumes] == [201, 301]
    assert [v.meta.description for v in volumes] == ["STD BRAIN 5MM", "COPY SHIFTED"]
    assert volumes[0].meta.series_uid != volumes[1].meta.series_uid
    _assert_same_volume(volumes[0], original)
    np.testing.assert_array_equal(volumes[1].array, original.array)
    np.testing.assert_allclose(volumes[1].affine, _shifted_affine(original), rtol=0, atol=1e-9)
    for v in volumes:
        assert v.meta.warnings == []
        assert len(v.meta.source_files) == N_SLICES


def test_two_series_load_is_ambiguous(two_series: Path) -> None:
    with pytest.raises(AmbiguousInputError) as info:
        medrecon.load(two_series)
    message = str(info.value)
    for part in ("#201", "STD BRAIN 5MM", "#301", "COPY SHIFTED", "series="):
        assert part in message


@pytest.mark.parametrize("series", [301, "301"])
def test_two_series_pick_by_number(two_series: Path, original: Volume, series) -> None:
    volume = medrecon.load(two_series, series=series)
    assert volume.meta.series_number == 301
    np.testing.assert_allclose(volume.affine, _shifted_affine(original), rtol=0, atol=1e-9)
    first = medrecon.load(two_series, series=201)
    _assert_same_volume(first, original)
    by_uid = medrecon.load(two_series, series=volume.meta.series_uid)
    assert by_uid.meta.series_number == 301
    with pytest.raises(InputError, match="no series"):
        medrecon.load(two_series, series=999)


def test_two_series_pick_decodes_only_the_chosen_series(two_series: Path, monkeypatch) -> None:
    from medrecon.io.dicom import stack

    decoded: list[set[int | None]] = []

    def spy(records, *args, **kwargs):
        decoded.append({r.series_number for r in records})
        return decode(records, *args, **kwargs)

    decode = stack.decode_slices
    monkeypatch.setattr(stack, "decode_slices", spy)
    volume = medrecon.load(two_series, series=301)
    assert volume.meta.series_number == 301
    assert decoded == [{301}]  # series 201's pixels were never decoded
    decoded.clear()
    with pytest.raises(InputError, match=r"no series 999.*#201 'STD BRAIN 5MM'.*#301"):
        medrecon.load(two_series, series=999)
    assert decoded == []


def test_two_series_scan(two_series: Path) -> None:
    report = medrecon.scan(two_series)
    assert report.n_files == 2 * N_SLICES
    assert report.skipped == []
    assert [s.series_number for s in report.series] == [201, 301]
    for summary in report.series:
        assert summary.shape == (512, 512, N_SLICES)
        assert summary.n_slices == N_SLICES
        assert summary.orientation == "axial"


# 6. non-slice objects in the folder -----------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("localizer", "localizer"),
        ("secondary_capture", "secondary capture"),
        ("sr", "structured report"),
    ],
)
def test_non_slice_object_is_skipped_with_reason(
    source: Path, original: Volume, tmp_path: Path, kind: str, reason: str
) -> None:
    slices = copy_slices(source, tmp_path)
    extra = add_non_image(slices[0], tmp_path, kind)
    report = medrecon.scan(tmp_path)
    assert report.n_files == N_SLICES + 1
    assert len(report.series) == 1
    assert report.series[0].n_slices == N_SLICES
    assert list(_skipped(report)) == [str(extra)]
    assert reason in _skipped(report)[str(extra)].lower()
    result = read(tmp_path)
    assert _skipped(result) == _skipped(report)
    (volume,) = result.volumes
    _assert_same_volume(volume, original)
    assert volume.meta.warnings == []


def test_localizer_secondary_capture_and_sr_together(
    source: Path, original: Volume, tmp_path: Path
) -> None:
    slices = copy_slices(source, tmp_path)
    extras = [add_non_image(slices[i], tmp_path, k) for i, k in enumerate(["localizer", "sr"])]
    extras.append(add_non_image(slices[-1], tmp_path, "secondary_capture"))
    report = medrecon.scan(tmp_path)
    assert sorted(_skipped(report)) == sorted(str(p) for p in extras)
    _assert_same_volume(medrecon.load(tmp_path), original)


# 7. damaged files -------------------------------------------------------------------------
def test_truncated_slice_is_dropped_and_interpolated(
    source: Path, original: Volume, tmp_path: Path
) -> None:
    slices = copy_slices(source, tmp_path)
    bad = slices[MIDDLE]
    truncate_pixel_data(bad)
    result = read(tmp_path)
    (volume,) = result.volumes
    assert "truncated" in _skipped(result)[str(bad)]
    assert list(_skipped(result)) == [str(bad)]
    assert any(str(bad) in w for w in volume.meta.warnings), volume.meta.warnings
    assert any(w.startswith("1 missing slice") for w in volume.meta.warnings)
    assert str(bad) not in volume.meta.source_files
    _assert_filled_hole(volume, original, MIDDLE)


def test_garbage_header_is_skipped(source: Path, original: Volume, tmp_path: Path) -> None:
    slices = copy_slices(source, tmp_path)
    bad = slices[-1]
    garble_header(bad, 2000, seed=SEED)
    result = read(tmp_path)
    assert list(_skipped(result)) == [str(bad)]
    assert _skipped(result)[str(bad)]
    (volume,) = result.volumes
    assert volume.shape == (512, 512, N_SLICES - 1)
    np.testing.assert_array_equal(volume.array, original.array[:, :, :-1])
    np.testing.assert_array_equal(volume.affine, original.affine)
    assert list(_skipped(medrecon.scan(tmp_path))) == [str(bad)]


def test_garbage_header_reason_says_corrupt(source: Path, tmp_path: Path) -> None:
    slices = copy_slices(source, tmp_path)
    garble_header(slices[-1], 2000, seed=SEED)
    assert "corrupt" in _skipped(medrecon.scan(tmp_path))[str(slices[-1])]


# 8. non-DICOM files -----------------------------------------------------------------------
def test_non_dicom_files_are_skipped_and_counted(
    source: Path, original: Volume, tmp_path: Path
) -> None:
    copy_slices(source, tmp_path)
    foreign = add_foreign_files(tmp_path, seed=SEED)
    report = medrecon.scan(tmp_path)
    assert report.n_files == N_SLICES + 2
    assert _skipped(report) == {str(p): "not a DICOM file" for p in foreign}
    result = read(tmp_path)
    assert result.n_files == N_SLICES + 2
    assert _skipped(result) == _skipped(report)
    _assert_same_volume(result.volumes[0], original)


# 9. nothing to load -----------------------------------------------------------------------
def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(NoImageError, match="no files found"):
        medrecon.load(tmp_path)
    with pytest.raises(NoImageError):
        medrecon.scan(tmp_path)


def test_only_non_dicom_files(tmp_path: Path) -> None:
    add_foreign_files(tmp_path, seed=SEED)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.md").write_text("# nothing here\n")
    for call in (medrecon.load, medrecon.scan):
        with pytest.raises(NoImageError) as info:
            call(tmp_path)
        message = str(info.value)
        assert "3 file(s)" in message
        assert "3 x not a DICOM file" in message


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-study"
    for call in (medrecon.load, medrecon.load_all, medrecon.scan):
        with pytest.raises(InputError, match="no such file") as info:
            call(missing)
        assert not isinstance(info.value, NoImageError)


# 10. zip archives -------------------------------------------------------------------------
def test_zip_loads_like_the_folder(source: Path, original: Volume, tmp_path: Path) -> None:
    copy_slices(source, tmp_path / "folder")
    archive = tmp_path / "archive.zip"
    members = zip_folder(tmp_path / "folder", archive, prefix="study/")
    result = read(archive)
    assert result.n_files == N_SLICES
    assert result.skipped == []
    (volume,) = result.volumes
    _assert_same_volume(volume, original)
    assert sorted(volume.meta.source_files) == sorted(f"{archive}!{m}" for m in members)
    (summary,) = medrecon.scan(archive).series
    assert summary.shape == original.shape


def test_zip_skipped_and_warnings_use_member_names(source: Path, tmp_path: Path) -> None:
    slices = copy_slices(source, tmp_path / "folder")
    truncate_pixel_data(slices[MIDDLE])
    add_foreign_files(tmp_path / "folder")
    archive = tmp_path / "archive.zip"
    zip_folder(tmp_path / "folder", archive)
    result = read(archive)
    expected = {
        f"{archive}!{slices[MIDDLE].name}",
        f"{archive}!notes.txt",
        f"{archive}!preview.png",
    }
    assert set(_skipped(result)) == expected
    (volume,) = result.volumes
    assert any(f"{archive}!{slices[MIDDLE].name}" in w for w in volume.meta.warnings)
    assert not any("medrecon-zip-" in w for w in volume.meta.warnings)  # no temp paths


def test_zip_error_messages_use_member_names(source: Path, tmp_path: Path) -> None:
    add_duplicate(source, tmp_path / "folder", MIDDLE, new_uid=True, change_pixels=True)
    archive = tmp_path / "archive.zip"
    zip_folder(tmp_path / "folder", archive)
    with pytest.raises(DuplicateSliceError) as info:
        medrecon.load(archive)
    assert "medrecon-zip-" not in str(info.value)
    assert f"{archive}!" in str(info.value)


def test_zip_logged_warnings_use_member_names(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    slices = copy_slices(source, tmp_path / "folder")
    truncate_pixel_data(slices[MIDDLE])
    archive = tmp_path / "archive.zip"
    zip_folder(tmp_path / "folder", archive)
    with caplog.at_level("WARNING", logger="medrecon"):
        read(archive)
    logged = [r.getMessage() for r in caplog.records if slices[MIDDLE].name in r.getMessage()]
    assert logged
    assert not any("medrecon-zip-" in m for m in logged)


@pytest.mark.parametrize(
    "bad", ["../evil.dcm", "ABSOLUTE", "..\\evil.dcm", "study/../../evil.dcm", "C:/evil.dcm"]
)
def test_unsafe_zip_is_refused(
    files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    extract_root = tmp_path / "tmp"  # where extraction folders are made
    extract_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(extract_root))
    outside = tmp_path / "outside" / "evil.dcm"
    outside.parent.mkdir()
    member = str(outside) if bad == "ABSOLUTE" else bad
    archive = tmp_path / "evil.zip"
    unsafe_zip(archive, files[:3], member)
    assert member in zipfile_names(archive)

    for call in (medrecon.load, medrecon.scan):
        with pytest.raises(UnsafeArchiveError) as info:
            call(archive)
        assert member in str(info.value) or repr(member) in str(info.value)
    assert not outside.exists()
    assert list(extract_root.iterdir()) == []  # nothing extracted, nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip", "outside", "tmp"]


def zipfile_names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        return zf.namelist()


# 11. DICOMDIR ------------------------------------------------------------------------------
def test_dicomdir_loads_like_the_folder(
    files: list[Path], original: Volume, tmp_path: Path
) -> None:
    dicomdir = build_dicomdir(files, tmp_path / "media")
    assert dicomdir.is_file()
    result = read(dicomdir)
    assert result.n_files == N_SLICES
    (volume,) = result.volumes
    _assert_same_volume(volume, original)
    media = (tmp_path / "media").resolve()
    assert all(Path(f).is_relative_to(media) for f in volume.meta.source_files)
    assert len(volume.meta.source_files) == N_SLICES
    assert medrecon.scan(dicomdir).series[0].n_slices == N_SLICES
