"""Write a 3D CT volume as a DICOM series: one single-frame CT Image Storage file per slice.

The volume comes as a NumPy array indexed ``(i, j, k)`` with a 4x4 voxel → RAS affine (the
nibabel convention). DICOM patient coordinates are LPS, so the affine is converted once,
``LPS = diag(-1, -1, 1) @ RAS``. Axis ``i`` becomes the DICOM columns, ``j`` the rows and
``k`` the slice index; each axis is flipped where needed so that the series reads as a
conventional one (for an axial volume: row cosine ≈ +x, column cosine ≈ +y in LPS, slices
ascending in z). Every voxel keeps its patient position exactly: pixel ``(r, c)`` of slice
``k`` lies at ``IPP_k + c * PixelSpacing[1] * row_cosine + r * PixelSpacing[0] * col_cosine``.

Pixels are stored as signed 16-bit integers (PixelRepresentation 1) with
``HU = stored * 1 + RescaleIntercept``; values that do not fit are refused, never clipped.
UIDs are derived from ``seed`` and the study/series description, so a rerun on the same
input writes byte-identical files. The series is written into a temporary folder beside
``out_dir`` and renamed into place, so an interrupted run leaves no partial series.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from medrecon.errors import InputError, OutputExistsError

__all__ = ["OutputExistsError", "series_geometry", "write_ct_series"]

logger = logging.getLogger(__name__)

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ORTHOGONALITY_TOLERANCE = 1e-4
_INT16_MIN, _INT16_MAX = -32768, 32767

# Fixed, plausible dates and times: the sample must be identical on every rerun.
_STUDY_DATE = "20200101"
_STUDY_TIME = "120000"


def _ds(value: float) -> DSfloat:
    """A decimal string of at most 16 characters, as close to ``value`` as that allows."""
    return DSfloat(float(value) + 0.0, auto_format=True)  # + 0.0 turns -0.0 into 0.0


def _make_uid(uid_root: str | None, *parts: object) -> UID:
    """A deterministic UID from ``parts``.

    With a root, pydicom's hash-based ``generate_uid``; without one, the ``2.25.`` form
    (ISO/IEC 9834-8) from a name-based UUID, because ``generate_uid(prefix=None)`` ignores
    ``entropy_srcs`` and would give a new random UID on every run.
    """
    # generate_uid joins its entropy sources with "", so separate them explicitly.
    entropy = "\x1f".join(str(part) for part in parts)
    if uid_root is None:
        return UID(f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, entropy).int}")
    return generate_uid(prefix=uid_root, entropy_srcs=[entropy])


def series_geometry(
    shape: Sequence[int], affine_ras: np.ndarray
) -> tuple[tuple[bool, bool, bool], np.ndarray]:
    """Axis flips and the flipped voxel → LPS affine for writing a volume as a DICOM series.

    Axis ``i`` (DICOM columns) and ``j`` (rows) are flipped when their largest LPS
    component is negative; axis ``k`` when it points against ``row_cosine x col_cosine``,
    so that slice positions ascend along the slice normal. Returns ``(flips, affine_lps)``
    where ``affine_lps`` maps the indices of the *flipped* array to LPS millimetres.
    """
    affine = np.asarray(affine_ras, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"the affine must be a finite 4x4 matrix, got shape {affine.shape}")
    lps = _RAS_TO_LPS @ affine
    axes = lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"the affine has a zero-length voxel axis (spacing {spacing})")
    cosines = axes / spacing
    gram = cosines.T @ cosines
    if np.max(np.abs(gram - np.eye(3))) > _ORTHOGONALITY_TOLERANCE:
        raise InputError(
            "the affine's voxel axes are not orthogonal (sheared grid); a DICOM series "
            "needs an orthogonal grid: resample the volume first"
        )
    flips = [False, False, False]
    for axis in (0, 1):
        dominant = int(np.argmax(np.abs(cosines[:, axis])))
        flips[axis] = bool(cosines[dominant, axis] < 0)
    signs = np.where(flips[:2], -1.0, 1.0)
    normal = np.cross(cosines[:, 0] * signs[0], cosines[:, 1] * signs[1])
    flips[2] = bool(np.dot(normal, cosines[:, 2]) < 0)

    flipped = lps.copy()
    for axis, flip in enumerate(flips):
        if flip:
            # new index n-1-i: origin moves to the far end, axis reverses.
            flipped[:3, 3] += (shape[axis] - 1) * lps[:3, axis]
            flipped[:3, axis] = -lps[:3, axis]
    return (flips[0], flips[1], flips[2]), flipped


def _stored_values(volume: np.ndarray, rescale_intercept: int) -> np.ndarray:
    """``HU - intercept`` as int16, refusing non-integer or out-of-range values."""
    if volume.ndim != 3:
        raise InputError(f"the volume must be 3D (i, j, k), got shape {volume.shape}")
    if volume.size == 0:
        raise InputError("the volume is empty")
    if np.issubdtype(volume.dtype, np.floating):
        if not np.all(np.isfinite(volume)) or not np.array_equal(volume, np.round(volume)):
            raise InputError(
                "the volume holds non-integer values; CT values are written exactly as "
                "integers: round them (or rescale) before writing"
            )
    elif not (np.issubdtype(volume.dtype, np.integer) or volume.dtype == np.bool_):
        raise InputError(f"cannot write a volume of dtype {volume.dtype} as CT")
    stored = volume.astype(np.int64) - int(rescale_intercept)
    low, high = int(stored.min()), int(stored.max())
    if low < _INT16_MIN or high > _INT16_MAX:
        raise InputError(
            f"values {int(volume.min())}..{int(volume.max())} with RescaleIntercept "
            f"{rescale_intercept} give stored values {low}..{high}, outside signed 16-bit: "
            "choose another rescale_intercept"
        )
    return stored.astype("<i2")


def _base_dataset(
    *,
    patient_id: str,
    study_description: str,
    series_description: str,
    series_number: int,
    uids: dict[str, UID],
    rows: int,
    columns: int,
    pixel_spacing: tuple[float, float],
    slice_thickness: float,
    orientation: np.ndarray,
    rescale_intercept: int,
) -> Dataset:
    """The attributes every slice of the series shares."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = _STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = _STUDY_TIME
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.PatientName = "Anonymous^Sample"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.BodyPartExamined = ""
    ds.KVP = ""
    ds.SliceThickness = _ds(slice_thickness)
    ds.SpacingBetweenSlices = _ds(slice_thickness)
    ds.PatientPosition = ""
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = "1"
    ds.SeriesNumber = int(series_number)
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds(v) for v in orientation]
    ds.FrameOfReferenceUID = uids["frame_of_reference"]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [_ds(pixel_spacing[0]), _ds(pixel_spacing[1])]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = str(int(rescale_intercept))
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def _write_slices(
    base: Dataset,
    stored: np.ndarray,
    affine_lps: np.ndarray,
    normal: np.ndarray,
    folder: Path,
    uid_root: str | None,
    uid_key: tuple[object, ...],
) -> list[str]:
    """Write one file per slice into ``folder``; return the file names."""
    n_slices = stored.shape[2]
    width = max(4, len(str(n_slices)))
    names = []
    for k in range(n_slices):
        position = affine_lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + affine_lps[:3, 3]
        sop_uid = _make_uid(uid_root, *uid_key, "sop", k)
        ds = base.copy()
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(np.dot(position, normal)))
        # DICOM pixel (row r, column c) is voxel (i=c, j=r, k).
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        ds["PixelData"].VR = "OW"

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "MEDRECON"
        ds.file_meta = meta

        name = f"IM{k + 1:0{width}d}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)
        names.append(name)
    return names


def write_ct_series(
    volume_array: np.ndarray,
    affine_ras: np.ndarray,
    out_dir: str | Path,
    *,
    patient_id: str = "MEDRECON-SAMPLE",
    study_description: str = "CT sample study",
    series_description: str = "CT axial",
    series_number: int = 1,
    rescale_intercept: int = -1024,
    uid_root: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``volume_array`` (HU, indexed i, j, k) as a CT Image Storage series in ``out_dir``.

    ``affine_ras`` maps voxel indices to RAS millimetres (nibabel's convention). Files are
    named ``IM0001.dcm`` … in ascending slice position, Explicit VR Little Endian. UIDs
    depend only on ``seed``, ``uid_root``, ``patient_id``, the descriptions and
    ``series_number``: the same call writes the same UIDs. ``uid_root`` (e.g. your
    organisation's root ending in ".") prefixes them; without one they take the
    ``2.25.<UUID>`` form. Returns the paths written, in slice order.

    Raises ``InputError`` for a volume or affine that cannot be written exactly (non-integer
    values, values outside signed 16-bit after the intercept, a sheared grid) and
    ``OutputExistsError`` when ``out_dir`` exists and ``overwrite`` is false.
    """
    volume = np.asarray(volume_array)
    stored = _stored_values(volume, rescale_intercept)
    flips, affine_lps = series_geometry(stored.shape, affine_ras)
    for axis, flip in enumerate(flips):
        if flip:
            stored = np.flip(stored, axis=axis)

    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    row_cosine = affine_lps[:3, 0] / spacing[0]
    col_cosine = affine_lps[:3, 1] / spacing[1]
    normal = np.cross(row_cosine, col_cosine)

    uid_key = (seed, patient_id, study_description)
    series_key = (*uid_key, series_number, series_description)
    uids = {
        "study": _make_uid(uid_root, *uid_key, "study"),
        "frame_of_reference": _make_uid(uid_root, *uid_key, "frame-of-reference"),
        "series": _make_uid(uid_root, *series_key, "series"),
    }
    base = _base_dataset(
        patient_id=patient_id,
        study_description=study_description,
        series_description=series_description,
        series_number=series_number,
        uids=uids,
        rows=stored.shape[1],
        columns=stored.shape[0],
        pixel_spacing=(float(spacing[1]), float(spacing[0])),
        slice_thickness=float(spacing[2]),
        orientation=np.concatenate([row_cosine, col_cosine]),
        rescale_intercept=int(rescale_intercept),
    )

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(
            f"{out_dir} exists already: choose another folder or pass overwrite=True"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    temp_dir.chmod(0o755)  # mkdtemp makes it private; the series is an ordinary folder
    try:
        names = _write_slices(base, stored, affine_lps, normal, temp_dir, uid_root, series_key)
        _replace_folder(temp_dir, out_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    logger.info(
        "wrote %d CT slices (%dx%d, flips i/j/k=%s) to %s",
        len(names),
        stored.shape[1],
        stored.shape[0],
        flips,
        out_dir,
    )
    return [out_dir / name for name in names]


def _replace_folder(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, moving an existing ``target`` aside first."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
