"""Synthetic DICOM cases made by copying and editing a real series with pydicom.

No tests live here. Each builder takes a source folder of single-frame slices
(e.g. ``../shared/data/dicom/ct-philips-axial``) and a destination folder
(usually under pytest's ``tmp_path``), writes real DICOM files there and
returns what a test needs to check the loader's answer: the paths written, the
slice that was changed, positions. Files stay whole and real (512x512 pixels,
original headers); only the attributes a case is about are edited.

Slices are always listed in ascending position along the slice normal, so the
index of a slice here is its k index in a loaded volume.
"""

from __future__ import annotations

import random
import shutil
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

__all__ = [
    "SC_SOP_CLASS",
    "SR_SOP_CLASS",
    "add_duplicate",
    "add_foreign_files",
    "add_non_image",
    "add_second_series",
    "build_dicomdir",
    "copy_slices",
    "garble_header",
    "hu_slice",
    "new_instance",
    "pixel_data_span",
    "remove_slice",
    "rescaled_copy",
    "reversed_positions",
    "rewrite",
    "sample_world_points",
    "set_stored_pixels",
    "shuffled_copy",
    "slice_files",
    "slice_position",
    "truncate_pixel_data",
    "unsafe_zip",
    "zip_folder",
]

SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"  # X-Ray Radiation Dose SR
_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) in little endian
_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


# -- reading and writing single files --------------------------------------------------
def _normal(ds: Dataset) -> np.ndarray:
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def slice_position(ds: Dataset) -> float:
    """Distance of a slice along its normal (LPS mm): the sort key for a stack."""
    return float(np.dot([float(v) for v in ds.ImagePositionPatient], _normal(ds)))


def slice_files(src: Path) -> list[Path]:
    """Image slices of the series in ``src`` (non-images such as DIRFILE left out), ascending."""
    found = []
    for path in sorted(Path(src).iterdir()):
        if not path.is_file():
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            found.append((slice_position(ds), path))
    found.sort()
    return [p for _, p in found]


def rewrite(src: Path, edit: Callable[[Dataset], None], dest: Path | None = None) -> Path:
    """Read ``src``, apply ``edit`` to the dataset and save it to ``dest`` (default: in place)."""
    ds = pydicom.dcmread(src)
    edit(ds)
    out = Path(dest) if dest is not None else Path(src)
    ds.save_as(out, enforce_file_format=True)
    return out


def new_instance(ds: Dataset) -> str:
    """Give ``ds`` a fresh SOPInstanceUID (header and file meta); returns it."""
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return uid


def _stored_dtype(ds: Dataset) -> np.dtype:
    if str(ds.file_meta.TransferSyntaxUID) not in _NATIVE_LE:
        raise ValueError("only native little-endian files can have their pixels rewritten")
    if int(ds.BitsAllocated) != 16:
        raise ValueError(f"BitsAllocated {ds.BitsAllocated} not supported here")
    return np.dtype("<i2" if int(ds.PixelRepresentation) else "<u2")


def set_stored_pixels(ds: Dataset, stored: np.ndarray) -> None:
    """Replace the stored pixel values of ``ds``; they must fit BitsStored."""
    dtype = _stored_dtype(ds)
    bits = int(ds.BitsStored)
    lo, hi = (
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if dtype.kind == "i" else (0, (1 << bits) - 1)
    )
    stored = np.asarray(stored)
    if stored.shape != (int(ds.Rows), int(ds.Columns)):
        raise ValueError(f"pixel shape {stored.shape} does not match the header")
    if stored.min() < lo or stored.max() > hi:
        raise ValueError(f"stored values {stored.min()}..{stored.max()} do not fit {bits} bits")
    ds.PixelData = stored.astype(dtype).tobytes()


def hu_slice(ds: Dataset) -> np.ndarray:
    """Rescaled values (HU for CT) of one slice, float64, as pydicom decodes it."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return ds.pixel_array.astype(np.float64) * slope + intercept


def pixel_data_span(path: Path) -> tuple[int, int]:
    """(offset of the first pixel byte, pixel byte count) of a native explicit-LE file."""
    raw = Path(path).read_bytes()
    at = raw.rfind(_PIXEL_TAG)
    if at < 0 or raw[at + 4 : at + 6] not in (b"OW", b"OB"):
        raise ValueError(f"{path}: no explicit-VR pixel data element found")
    length = int.from_bytes(raw[at + 8 : at + 12], "little")
    if at + 12 + length > len(raw):
        raise ValueError(f"{path}: pixel data runs past the end of the file")
    return at + 12, length


# -- whole-series builders ---------------------------------------------------------------
def copy_slices(src: Path, dst: Path) -> list[Path]:
    """Copy the slices of ``src`` into ``dst`` under their own names; ascending order."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for path in slice_files(src):
        target = dst / path.name
        shutil.copyfile(path, target)  # copyfile: no read-only mode carried over
        out.append(target)
    return out


def shuffled_copy(src: Path, dst: Path, seed: int = 0) -> dict[Path, Path]:
    """Copy the slices under random names with InstanceNumber scrambled.

    Returns ``{source slice: copy}``; files are written in a random order too.
    """
    rng = random.Random(seed)
    files = slice_files(src)
    numbers = list(range(1, len(files) + 1))
    rng.shuffle(numbers)
    order = list(range(len(files)))
    rng.shuffle(order)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    out: dict[Path, Path] = {}
    for i in order:
        name = f"{rng.getrandbits(48):012x}" + rng.choice(["", ".dcm", ".DCM", ".ima"])
        number = numbers[i]

        def edit(ds: Dataset, number: int = number) -> None:
            ds.InstanceNumber = number

        out[files[i]] = rewrite(files[i], edit, dst / name)
    return out


def add_duplicate(
    src: Path,
    dst: Path,
    index: int,
    *,
    new_uid: bool = False,
    change_pixels: bool = False,
) -> tuple[Path, Path]:
    """Copy the series and add a second file for slice ``index`` at the same position.

    ``new_uid`` gives the copy its own SOPInstanceUID (else it is the same image
    stored twice); ``change_pixels`` adds 1 to every stored pixel of the copy.
    Returns (the slice's own file, the duplicate).
    """
    files = copy_slices(src, dst)

    def edit(ds: Dataset) -> None:
        if new_uid:
            new_instance(ds)
        if change_pixels:
            set_stored_pixels(ds, ds.pixel_array.astype(np.int64) + 1)

    return files[index], rewrite(files[index], edit, Path(dst) / f"zz_copy_of_{files[index].name}")


def remove_slice(src: Path, dst: Path, index: int) -> tuple[list[Path], Path]:
    """Copy the series without slice ``index``; returns (files kept, the removed file's name)."""
    files = copy_slices(src, dst)
    files[index].unlink()
    return [f for i, f in enumerate(files) if i != index], files[index]


def rescaled_copy(
    src: Path,
    dst: Path,
    rescale: dict[int, tuple[float, float]],
    *,
    even: bool = False,
) -> list[Path]:
    """Copy the series, giving slice ``i`` the (slope, intercept) ``rescale[i]``.

    Stored values are recomputed so each slice's rescaled values stay the same.
    Negative stored values switch the file to signed pixels (PixelRepresentation 1).
    ``even``: first clear the lowest stored bit of every slice (all files), so a
    slope of 2 can hold the values exactly; two copies made with ``even=True``
    then hold the same values whatever their rescales.
    """
    files = copy_slices(src, dst)
    for i, path in enumerate(files):
        if not even and i not in rescale:
            continue

        def edit(ds: Dataset, i: int = i) -> None:
            stored = ds.pixel_array.astype(np.int64)
            if even:
                stored &= ~1
            slope0 = float(ds.get("RescaleSlope", 1) or 1)
            intercept0 = float(ds.get("RescaleIntercept", 0) or 0)
            values = stored * slope0 + intercept0
            slope, intercept = rescale.get(i, (slope0, intercept0))
            new = (values - intercept) / slope
            if not np.array_equal(new, np.rint(new)):
                raise ValueError(f"slice {i}: slope {slope} cannot hold the values exactly")
            if new.min() < 0:  # negative stored values: switch to signed pixels
                ds.PixelRepresentation = 1
            for stale in ("SmallestImagePixelValue", "LargestImagePixelValue"):
                if stale in ds:
                    delattr(ds, stale)
            set_stored_pixels(ds, np.rint(new).astype(np.int64))
            ds.RescaleSlope = slope
            ds.RescaleIntercept = intercept

        rewrite(path, edit)
    return files


def add_second_series(
    src: Path,
    dst: Path,
    *,
    series_number: int,
    description: str,
    shift_mm: Sequence[float],
) -> tuple[list[Path], list[Path]]:
    """Copy the series into ``dst``, plus a second series: the same slices with a new
    SeriesInstanceUID, SOPInstanceUIDs, number and description, shifted by ``shift_mm`` (LPS).

    Returns (first series' files, second series' files), both ascending.
    """
    first = copy_slices(src, dst)
    series_uid = generate_uid()
    second = []
    for path in first:

        def edit(ds: Dataset) -> None:
            new_instance(ds)
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = series_number
            ds.SeriesDescription = description
            ds.ImagePositionPatient = [
                float(v) + float(s) for v, s in zip(ds.ImagePositionPatient, shift_mm)
            ]

        second.append(rewrite(path, edit, Path(dst) / f"s{series_number}_{path.name}"))
    return first, second


def add_non_image(slice_file: Path, dst: Path, kind: str) -> Path:
    """Write a non-slice object made from ``slice_file`` into ``dst``; returns its path.

    ``kind``: "localizer" (ImageType ORIGINAL\\PRIMARY\\LOCALIZER, coronal
    orientation), "secondary_capture" (SOP class 1.2.840.10008.5.1.4.1.1.7) or
    "sr" (SOP class 1.2.840.10008.5.1.4.1.1.88.67, no pixel data). All share the
    series UID of the slice they came from, as scanners write them.
    """

    def edit(ds: Dataset) -> None:
        new_instance(ds)
        if kind == "localizer":
            ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        elif kind == "secondary_capture":
            ds.SOPClassUID = SC_SOP_CLASS
            ds.file_meta.MediaStorageSOPClassUID = SC_SOP_CLASS
            ds.ImageType = ["DERIVED", "SECONDARY"]
        elif kind == "sr":
            ds.SOPClassUID = SR_SOP_CLASS
            ds.file_meta.MediaStorageSOPClassUID = SR_SOP_CLASS
            ds.Modality = "SR"
            del ds.PixelData
        else:
            raise ValueError(f"unknown non-image kind {kind!r}")

    return rewrite(slice_file, edit, Path(dst) / f"{kind}.dcm")


def truncate_pixel_data(path: Path) -> int:
    """Cut ``path`` off half-way through its pixel data; returns the new file size."""
    offset, length = pixel_data_span(path)
    size = offset + length // 2
    with open(path, "r+b") as fh:
        fh.truncate(size)
    return size


def garble_header(path: Path, n_bytes: int = 2000, seed: int = 0) -> None:
    """Overwrite ``n_bytes`` right after the 128-byte preamble and 'DICM' with random bytes."""
    raw = bytearray(Path(path).read_bytes())
    noise = np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    raw[132 : 132 + n_bytes] = noise
    Path(path).write_bytes(bytes(raw))


def add_foreign_files(dst: Path, seed: int = 0) -> list[Path]:
    """Write a text note and a PNG-like binary (PNG signature + random bytes) into ``dst``."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    text = dst / "notes.txt"
    text.write_text("Patient scanned twice; see series 3.\nDo not use series 2.\n")
    png = dst / "preview.png"
    noise = np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + noise)
    return [text, png]


def reversed_positions(src: Path, dst: Path) -> list[Path]:
    """Copy the series with positions reversed: the slice that was first is now last.

    InstanceNumber and file names are unchanged, so the series is now stored in
    descending position order. Returns the copies in their new ascending order.
    """
    files = copy_slices(src, dst)
    positions = [pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient for f in files]
    for path, ipp in zip(files, reversed(positions)):

        def edit(ds: Dataset, ipp=ipp) -> None:
            ds.ImagePositionPatient = list(ipp)

        rewrite(path, edit)
    return files[::-1]


# -- containers: zip and DICOMDIR ------------------------------------------------------------
def zip_folder(folder: Path, archive: Path, prefix: str = "") -> list[str]:
    """Zip every file of ``folder`` into ``archive`` as ``prefix + name``; returns member names."""
    members = []
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(Path(folder).iterdir()):
            zf.write(path, prefix + path.name)
            members.append(prefix + path.name)
    return members


def unsafe_zip(archive: Path, files: Iterable[Path], bad_member: str) -> None:
    """Zip ``files`` plus one member stored under the raw name ``bad_member``
    (``../x.dcm`` or an absolute path); zipfile keeps such names as written."""
    files = list(files)
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files:
            zf.write(path, path.name)
        zf.writestr(zipfile.ZipInfo(bad_member), files[0].read_bytes())


def build_dicomdir(files: Iterable[Path], dst: Path) -> Path:
    """A DICOMDIR file-set in ``dst`` holding ``files`` (pydicom FileSet); returns DICOMDIR."""
    fs = FileSet()
    for path in files:
        fs.add(pydicom.dcmread(path))
    fs.write(Path(dst))
    return Path(dst) / "DICOMDIR"


# -- geometry reference ----------------------------------------------------------------------
def sample_world_points(
    files: Sequence[Path], n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, int, int]]]:
    """``n`` random pixels of ``files``: their RAS positions (mm), rescaled values, and where
    they came from as (file, row, col). Positions follow DICOM PS3.3 C.7.6.2.1.1:
    IPP + col * PixelSpacing[1] * row cosine + row * PixelSpacing[0] * column cosine (LPS),
    then x and y negated for RAS.
    """
    rng = np.random.default_rng(seed)
    datasets = {path: pydicom.dcmread(path) for path in files}
    values_of = {path: hu_slice(ds) for path, ds in datasets.items()}
    ras, values, where = [], [], []
    for _ in range(n):
        path = files[int(rng.integers(len(files)))]
        ds = datasets[path]
        row, col = int(rng.integers(int(ds.Rows))), int(rng.integers(int(ds.Columns)))
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        row_sp, col_sp = (float(v) for v in ds.PixelSpacing)
        lps = (
            np.asarray([float(v) for v in ds.ImagePositionPatient])
            + col * col_sp * iop[:3]
            + row * row_sp * iop[3:]
        )
        ras.append(lps * np.array([-1.0, -1.0, 1.0]))
        values.append(values_of[path][row, col])
        where.append((path, row, col))
    return np.asarray(ras), np.asarray(values), where
