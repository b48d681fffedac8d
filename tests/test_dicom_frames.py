"""Frame policy: a frame that is its own SOP instance is never dropped; only copies are.

GE stores diffusion, fMRI and multiphase series as single-frame files, one SOP
instance per frame with its own InstanceNumber (and b-value or temporal position);
frames may hold identical pixels. Cases are built from 6 real CT slices of
``../shared/data/dicom/ct-philips-axial``, repeated as frames with pydicom.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_synth import new_instance, set_stored_pixels, slice_files

import medrecon
from medrecon.errors import DuplicateSliceError

FIRST, N = 10, 6  # slices 10..15 of the real series


@pytest.fixture(scope="module")
def slices(shared_data: Path) -> list[Path]:
    return slice_files(shared_data / "dicom" / "ct-philips-axial")[FIRST : FIRST + N]


@pytest.fixture(scope="module")
def reference(shared_data: Path) -> np.ndarray:
    return medrecon.load(shared_data / "dicom" / "ct-philips-axial").array[:, :, FIRST : FIRST + N]


def write_frames(slices, dst: Path, frames: int, edit, *, new_uids: bool = True) -> list[Path]:
    """``frames`` copies of ``slices`` as one series; ``edit(ds, t, k)`` sets frame keys."""
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for t in range(frames):
        for k, path in enumerate(slices):
            ds = pydicom.dcmread(path)
            if new_uids:
                new_instance(ds)
            edit(ds, t, k)
            target = dst / f"t{t}_{path.name}"
            ds.save_as(target, enforce_file_format=True)
            out.append(target)
    return out


def _multiphase(ds, t, k):
    ds.InstanceNumber = t * N + k + 1
    ds.TemporalPositionIdentifier = t + 1
    ds.NumberOfTemporalPositions = 4


def _diffusion(ds, t, k):
    ds.InstanceNumber = t * N + k + 1
    ds.DiffusionBValue = float((0, 500, 1000)[t])


def _assert_frames(volume, reference, frames):
    assert volume.shape == (*reference.shape, frames)
    for t in range(frames):
        np.testing.assert_array_equal(volume.array[..., t], reference)


def test_identical_multiphase_frames_are_all_kept(slices, reference, tmp_path):
    files = write_frames(slices, tmp_path / "in", 4, _multiphase)
    volume = medrecon.load(tmp_path / "in")
    _assert_frames(volume, reference, 4)
    assert volume.meta.frame_axis == "time"
    assert sorted(volume.meta.source_files) == sorted(str(f) for f in files)
    assert not [w for w in volume.meta.warnings if "repeated" in w or "duplicate" in w]


def test_identical_diffusion_frames_are_all_kept(slices, reference, tmp_path):
    write_frames(slices, tmp_path / "in", 3, _diffusion)
    volume = medrecon.load(tmp_path / "in")
    _assert_frames(volume, reference, 3)
    assert volume.meta.frame_axis == "instance"


def test_frames_keep_their_order_when_pixels_differ(slices, reference, tmp_path):
    def edit(ds, t, k):
        _multiphase(ds, 3 - t, k)  # files written last are the first time point
        set_stored_pixels(ds, ds.pixel_array.astype(np.int64) + (3 - t))

    write_frames(slices, tmp_path / "in", 4, edit)
    volume = medrecon.load(tmp_path / "in")
    for t in range(4):
        np.testing.assert_array_equal(volume.array[..., t], reference + t)


def test_the_same_file_copied_twice_loads_once(slices, reference, tmp_path):
    files = write_frames(slices, tmp_path / "in", 4, _multiphase)
    copies = []
    for f in files[:N]:  # every slice of time point 1, stored again under other names
        copies.append(tmp_path / "in" / f"zz_{f.name}")
        shutil.copyfile(f, copies[-1])
    volume = medrecon.load(tmp_path / "in")
    _assert_frames(volume, reference, 4)
    (warning,) = [w for w in volume.meta.warnings if "duplicate file" in w]
    assert f"{N} duplicate file(s) of the same image dropped" in warning
    assert not set(map(str, copies)) & set(volume.meta.source_files)


def test_re_encoded_copy_under_new_uids_is_dropped(slices, reference, tmp_path):
    """New SOPInstanceUIDs but the same pixels and the same instance and acquisition
    numbers: the same images stored twice (as the transfer-syntax test files are)."""
    write_frames(slices, tmp_path / "in", 2, lambda ds, t, k: None)
    volume = medrecon.load(tmp_path / "in")
    assert volume.shape == reference.shape
    np.testing.assert_array_equal(volume.array, reference)
    assert any("1 repeated frame(s)" in w for w in volume.meta.warnings)


@pytest.mark.parametrize("same_pixels", [True, False], ids=["same-pixels", "other-pixels"])
def test_one_position_of_distinct_acquisitions_is_4d(slices, reference, tmp_path, same_pixels):
    def edit(ds, t, k):
        _multiphase(ds, t, k)
        if not same_pixels:
            set_stored_pixels(ds, ds.pixel_array.astype(np.int64) + t)

    write_frames(slices[:1], tmp_path / "in", 3, edit)
    volume = medrecon.load(tmp_path / "in")
    assert volume.shape == (*reference.shape[:2], 1, 3)
    for t in range(3):
        expected = reference[:, :, 0] + (0 if same_pixels else t)
        np.testing.assert_array_equal(volume.array[:, :, 0, t], expected)


def test_one_position_of_indistinct_copies_with_other_pixels_is_refused(slices, tmp_path):
    def edit(ds, t, k):
        set_stored_pixels(ds, ds.pixel_array.astype(np.int64) + t)

    write_frames(slices[:1], tmp_path / "in", 2, edit)
    with pytest.raises(DuplicateSliceError, match="same position"):
        medrecon.load(tmp_path / "in")
