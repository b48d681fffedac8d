"""Decode slice pixels and apply the rescale, keeping values exact.

Native little-endian single-frame files are read straight from disk at the
offset found while reading the header (no second parse). Everything else goes
through pydicom's pixel plugins (pylibjpeg, pillow, gdcm), one decode per file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pydicom
from pydicom.uid import UID

from medrecon.errors import DecodeError
from medrecon.io.dicom.mosaic import split_mosaic
from medrecon.io.dicom.records import SliceHeader
from medrecon.progress import counted

__all__ = ["DecodeFailure", "decode_slices", "rescale_stack", "decoder_hint"]

# Which package decodes which compressed transfer syntax (pydicom pixel plugins).
_DECODER_HINTS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg or pillow",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg or pyjpegls",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg or pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg or pillow",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg or pillow",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (or numpy, built in)",
}


class DecodeFailure(Exception):
    """One file's pixels could not be decoded (corrupt or truncated)."""


def decoder_hint(transfer_syntax: str) -> str:
    """Name of the package that decodes ``transfer_syntax``, for error messages."""
    return _DECODER_HINTS.get(transfer_syntax, "gdcm (python-gdcm)")


def _native_dtype(rec: SliceHeader) -> np.dtype:
    if rec.bits_allocated == 8:
        return np.dtype(np.int8 if rec.pixel_representation else np.uint8)
    if rec.bits_allocated == 16:
        return np.dtype("<i2" if rec.pixel_representation else "<u2")
    if rec.bits_allocated == 32:
        return np.dtype("<i4" if rec.pixel_representation else "<u4")
    raise DecodeFailure(f"unsupported BitsAllocated {rec.bits_allocated}")


def _fix_bits_stored(pixels: np.ndarray, rec: SliceHeader) -> np.ndarray:
    """Drop bits above BitsStored (overlays, junk) and sign-extend signed data."""
    extra = rec.bits_allocated - rec.bits_stored
    if extra <= 0 or pixels.dtype.kind not in "iu":
        return pixels
    if rec.pixel_representation:
        return (pixels << extra) >> extra
    return pixels & np.array((1 << rec.bits_stored) - 1, dtype=pixels.dtype)


def _read_native(rec: SliceHeader) -> np.ndarray:
    dtype = _native_dtype(rec)
    count = rec.rows * rec.cols
    if rec.pixel_length is not None and rec.pixel_length < count * dtype.itemsize:
        raise DecodeFailure(
            f"pixel data holds {rec.pixel_length} bytes, {count * dtype.itemsize} expected"
        )
    with open(rec.path, "rb") as fh:
        fh.seek(rec.pixel_offset or 0)
        raw = fh.read(count * dtype.itemsize)
    if len(raw) < count * dtype.itemsize:
        raise DecodeFailure(
            f"file is truncated: {len(raw)} of {count * dtype.itemsize} pixel bytes present"
        )
    return _fix_bits_stored(np.frombuffer(raw, dtype=dtype).reshape(rec.rows, rec.cols), rec)


def _decode_file(path: str, first: SliceHeader) -> np.ndarray:
    """All frames of one file as ``(frames, rows, cols)`` stored values."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise DecodeFailure(f"unreadable ({type(exc).__name__}: {exc})") from exc
    ts = first.transfer_syntax
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        msg = str(exc)
        if (
            "no pixel data handler" in msg.lower()
            or "unable to decompress" in msg.lower()
            or ("plugin" in msg.lower() and "missing" in msg.lower())
            or isinstance(exc, NotImplementedError)
        ):
            name = UID(ts).name if ts else "unknown"
            raise DecodeError(
                f"{path}: cannot decode pixel data in transfer syntax {name} ({ts}); "
                f"install {decoder_hint(ts)} to read it (pip install medrecon pulls in the "
                f"pylibjpeg decoders). Detail: {msg.splitlines()[0]}"
            ) from exc
        raise DecodeFailure(f"corrupt pixel data ({msg.splitlines()[0]})") from exc
    except Exception as exc:
        raise DecodeFailure(f"corrupt pixel data ({type(exc).__name__}: {exc})") from exc
    arr = np.asarray(arr)
    if first.kind == "mosaic":
        return split_mosaic(
            arr,
            first.mosaic_tiles,
            int(ds[0x0019, 0x100A].value) if (0x0019, 0x100A) in ds else first.mosaic_tiles**2,
        )
    if first.kind == "grid":  # UIH VFRAME
        from medrecon.io.dicom.uih import split_grid, uih_slice_count

        return split_grid(arr, first.rows, first.cols, uih_slice_count(ds) or 1)
    if arr.ndim == 2 or (arr.ndim == 3 and first.samples_per_pixel > 1):
        arr = arr[None]  # one frame: (1, rows, cols[, samples])
    return arr


def _decode_group(path: str, recs: list[SliceHeader]) -> list[np.ndarray]:
    first = recs[0]
    if first.kind == "single" and first.pixel_offset is not None and first.samples_per_pixel == 1:
        return [_read_native(first)]
    frames = _decode_file(path, first)
    out = []
    for rec in recs:
        index = rec.frame or 0
        if index >= len(frames):
            raise DecodeFailure(f"frame {index + 1} missing: file holds {len(frames)} frames")
        out.append(frames[index])
    return out


def decode_slices(
    records: Sequence[SliceHeader], threads: int = 4
) -> tuple[list[np.ndarray | None], dict[str, str]]:
    """Stored pixel arrays for ``records`` (same order); None where a file failed.

    Returns the arrays and ``{path: reason}`` for the files that could not be read.
    A transfer syntax with no decoder installed raises ``DecodeError`` instead.
    """
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        by_file[rec.path].append(i)
    out: list[np.ndarray | None] = [None] * len(records)
    failures: dict[str, str] = {}

    def work(item: tuple[str, list[int]]) -> None:
        path, idx = item
        try:
            arrays = _decode_group(path, [records[i] for i in idx])
        except DecodeFailure as exc:
            failures[path] = str(exc)
            return
        except OSError as exc:
            failures[path] = f"cannot read file ({exc})"
            return
        for i, arr in zip(idx, arrays):
            out[i] = arr

    items = list(by_file.items())
    if threads > 1 and len(items) > 8:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(counted(pool.map(work, items), "files decoded", len(items)))
    else:
        for item in counted(items, "files decoded", len(items)):
            work(item)
    return out, failures


def rescale_stack(
    slices: Sequence[np.ndarray], slopes: np.ndarray, intercepts: np.ndarray
) -> np.ndarray:
    """Apply per-slice RescaleSlope/Intercept; returns one ``(N, rows, cols)`` array.

    The result is int16 when every slice's rescale is integral and all values
    fit; otherwise float32 (exact for integers up to 2**24). Slices are written
    one by one into the final array, so no full-size temporary is made.
    """
    slopes = np.asarray(slopes, dtype=np.float64)
    intercepts = np.asarray(intercepts, dtype=np.float64)
    shape = (len(slices), *slices[0].shape)
    integral = np.all(slopes == np.rint(slopes)) and np.all(intercepts == np.rint(intercepts))
    if integral and all(sl.dtype.kind in "iu" for sl in slices):
        lo = np.array([int(sl.min()) for sl in slices], dtype=np.int64)
        hi = np.array([int(sl.max()) for sl in slices], dtype=np.int64)
        s, b = slopes.astype(np.int64), intercepts.astype(np.int64)
        ends = np.concatenate([lo * s + b, hi * s + b])
        if ends.min() >= -32768 and ends.max() <= 32767:
            out = np.empty(shape, dtype=np.int16)
            for k, sl in enumerate(slices):
                # int32 arithmetic on one slice, then the (range-checked) cast.
                np.add(
                    sl * np.int32(s[k]) if s[k] != 1 else sl,
                    np.int32(b[k]),
                    out=out[k],
                    casting="unsafe",
                    dtype=np.int32,
                )
            return out
    out = np.empty(shape, dtype=np.float32)
    for k, sl in enumerate(slices):
        # float64 arithmetic, one rounding to float32 at the end.
        np.add(sl * slopes[k], intercepts[k], out=out[k], casting="same_kind", dtype=np.float64)
    return out
