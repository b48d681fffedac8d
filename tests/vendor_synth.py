"""Vendor cases built from a real series (copies edited with pydicom; no tests here).

Each builder copies real slices of ``../shared/data/dicom/ct-philips-axial``
(512x512, 16-bit, explicit VR little endian) and edits only what the vendor
rule is about: Philips private scale slope, Philips diffusion volumes with a
derived trace, GE epi_pepolar volumes stored with reversed rows, colour slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from dicom_synth import new_instance, slice_files
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

__all__ = [
    "colour_series",
    "ge_pepolar_series",
    "philips_classic_mr",
    "philips_dwi_series",
    "rgb_of",
    "uih_vframe_grid",
]

PHILIPS_CREATOR = "Philips MR Imaging DD 001"
GE_CREATOR = "GEMS_ACQU_01"


def _as_mr(ds: Dataset, manufacturer: str, series_uid: str) -> None:
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.SeriesInstanceUID = series_uid


def _save(ds: Dataset, path: Path, implicit: bool = False) -> Path:
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return path


def philips_classic_mr(
    src: Path,
    dst: Path,
    *,
    rescale_slope: float,
    rescale_intercept: float,
    scale_slope: float,
    implicit: bool = False,
) -> list[Path]:
    """Classic Philips MR slices: RescaleSlope/Intercept and private Scale Slope (2005,100E)."""
    dst.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    out = []
    for path in slice_files(src):
        ds = pydicom.dcmread(path)
        _as_mr(ds, "Philips Medical Systems", uid)
        ds.RescaleSlope = f"{rescale_slope:.10g}"
        ds.RescaleIntercept = f"{rescale_intercept:.10g}"
        block = ds.private_block(0x2005, PHILIPS_CREATOR, create=True)
        block.add_new(0x0E, "FL", scale_slope)
        out.append(_save(ds, dst / path.name, implicit))
    return out


def philips_dwi_series(
    src: Path, dst: Path, volumes: Sequence[dict], n_slices: int = 6
) -> tuple[list[list[Path]], list[np.ndarray]]:
    """A classic Philips diffusion series: one volume per entry of ``volumes``.

    Each entry may give ``b`` (DiffusionBValue), ``gradient`` (3 floats, in the
    private (2005,10B0..2) tags), ``directionality`` (0018,9075) and
    ``image_type`` (ImageType values). Volume v
    stores the real slice values plus 100 * v, so every volume differs. Returns
    the files per volume and the stored arrays of the first ``n_slices`` slices.
    """
    dst.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    sources = slice_files(src)[:n_slices]
    stored = [pydicom.dcmread(p).pixel_array for p in sources]
    files: list[list[Path]] = []
    for v, spec in enumerate(volumes):
        paths = []
        for k, path in enumerate(sources):
            ds = pydicom.dcmread(path)
            _as_mr(ds, "Philips Medical Systems", uid)
            new_instance(ds)
            ds.InstanceNumber = v * 100 + k + 1
            ds.AcquisitionNumber = 1
            ds.TemporalPositionIdentifier = v + 1
            ds.PixelData = (stored[k].astype(np.uint16) + 100 * v).astype("<u2").tobytes()
            if "b" in spec:
                ds.add_new((0x0018, 0x9087), "FD", float(spec["b"]))
            if "image_type" in spec:
                ds.ImageType = list(spec["image_type"])
            if "directionality" in spec:
                ds.add_new((0x0018, 0x9075), "CS", spec["directionality"])
            if "gradient" in spec:
                block = ds.private_block(0x2005, PHILIPS_CREATOR, create=True)
                for elem, value in zip((0xB0, 0xB1, 0xB2), spec["gradient"]):
                    block.add_new(elem, "FL", float(value))
            paths.append(_save(ds, dst / f"v{v}_s{k}.dcm"))
        files.append(paths)
    return files, stored


def ge_pepolar_series(
    src: Path, dst: Path, *, mode: int, n_volumes: int = 4, n_slices: int = 5
) -> tuple[list[bool], list[np.ndarray]]:
    """GE epi_pepolar volumes; reversed-polarity ones store each slice's rows reversed.

    Volume v has TemporalPositionIdentifier v + 1 and values offset by 50 * v.
    Returns which volumes were stored reversed and the true stored slices.
    """
    dst.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    sources = slice_files(src)[:n_slices]
    stored = [pydicom.dcmread(p).pixel_array for p in sources]
    reversed_volumes = []
    for v in range(n_volumes):
        number = v + 1
        rev = mode == 1 or (mode == 2 and number % 2 == 1) or (mode == 3 and number % 2 == 0)
        reversed_volumes.append(rev)
        for k, path in enumerate(sources):
            ds = pydicom.dcmread(path)
            _as_mr(ds, "GE MEDICAL SYSTEMS", uid)
            new_instance(ds)
            ds.InstanceNumber = v * 100 + k + 1
            ds.TemporalPositionIdentifier = number
            values = stored[k].astype(np.uint16) + 50 * v
            ds.PixelData = (values[::-1] if rev else values).astype("<u2").tobytes()
            block = ds.private_block(0x0019, GE_CREATOR, create=True)
            block.add_new(0x9C, "LO", "epi_pepolar")
            block.add_new(0xB3, "DS", str(mode))
            _save(ds, dst / f"v{v}_s{k}.dcm")
    return reversed_volumes, stored


def rgb_of(stored: np.ndarray) -> np.ndarray:
    """A colour image made from a greyscale slice: three different 8-bit channels."""
    grey = np.clip((stored.astype(np.float64) - 900.0) / 400.0 * 255.0, 0, 255).astype(np.uint8)
    return np.stack([grey, 255 - grey, (grey // 2 + 60).astype(np.uint8)], axis=-1)


def colour_series(
    src: Path,
    dst: Path,
    *,
    photometric: str = "RGB",
    planar: int = 0,
    n_slices: int = 6,
    rle: bool = False,
) -> list[np.ndarray]:
    """Colour slices (SamplesPerPixel 3) at the real positions; returns the RGB arrays."""
    from pydicom.pixels import convert_color_space

    dst.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    out = []
    for k, path in enumerate(slice_files(src)[:n_slices]):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = uid
        new_instance(ds)
        rgb = rgb_of(ds.pixel_array)
        out.append(rgb)
        pixels = convert_color_space(rgb, "RGB", "YBR_FULL") if photometric == "YBR_FULL" else rgb
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = photometric
        ds.PlanarConfiguration = planar
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
            if keyword in ds:
                delattr(ds, keyword)
        data = pixels.transpose(2, 0, 1) if planar else pixels  # planar 1: RR..GG..BB..
        ds.PixelData = np.ascontiguousarray(data).tobytes()
        if rle:
            from pydicom.uid import RLELossless

            ds.compress(RLELossless, pixels, encoding_plugin="pydicom")
            ds.save_as(dst / f"c{k}.dcm", enforce_file_format=True)
        else:
            _save(ds, dst / f"c{k}.dcm")
    return out


UIH_TEST_CREATOR = "MEDRECON TEST UIH"  # any creator: the loader reads (0065,xx50/51) by number


def uih_vframe_grid(
    src: Path,
    dst: Path,
    *,
    n: int = 5,
    positions: bool = True,
    descending: bool = False,
    top_position: bool = True,
) -> list[Path]:
    """One UIH "VFRAME" file holding ``n`` real slices as a grid (ceil(sqrt(n)) columns).

    Tiles are the real slices in ascending (or ``descending``) order; the private
    (0065,1051) sequence gives each tile's ImagePositionPatient when ``positions``.
    Without ``top_position`` the file has no ImagePositionPatient of its own, as
    real UIH VFRAME files (dcm_qa_uih) have. Returns the slice files, in tile order.
    """
    sources = slice_files(src)[:n]
    if descending:
        sources = sources[::-1]
    slices = [pydicom.dcmread(p) for p in sources]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    tr, tc = int(slices[0].Rows), int(slices[0].Columns)
    image = np.zeros((rows * tr, cols * tc), dtype=np.uint16)
    for k, s in enumerate(slices):
        r, c = divmod(k, cols)
        image[r * tr : (r + 1) * tr, c * tc : (c + 1) * tc] = s.pixel_array
    ds = slices[0]
    _as_mr(ds, "UIH", generate_uid())
    new_instance(ds)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "VFRAME"]
    ds.Rows, ds.Columns = image.shape
    ds.PixelData = image.astype("<u2").tobytes()
    ds.SpacingBetweenSlices = abs(
        float(
            np.dot(
                np.subtract(slices[1].ImagePositionPatient, slices[0].ImagePositionPatient),
                np.cross(
                    [float(v) for v in ds.ImageOrientationPatient[:3]],
                    [float(v) for v in ds.ImageOrientationPatient[3:]],
                ),
            )
        )
    )
    block = ds.private_block(0x0065, UIH_TEST_CREATOR, create=True)
    block.add_new(0x50, "DS", str(n))
    if positions:
        items = []
        for s in slices:
            item = Dataset()
            item.ImagePositionPatient = s.ImagePositionPatient
            items.append(item)
        block.add_new(0x51, "SQ", items)
    if not top_position:
        del ds.ImagePositionPatient
    dst.mkdir(parents=True, exist_ok=True)
    _save(ds, dst / "grid.dcm")
    return sources
