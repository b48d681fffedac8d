"""Siemens CSA image header: the two values a mosaic needs, without nibabel.

Importing nibabel's CSA reader loads the whole nibabel package (about 0.2 s), a
large share of ``medrecon info`` on a small mosaic series. Facts of the format
(as documented by nibabel and dcm2niix): the blob is private element (0029,xx10)
of the block whose creator (0029,00xx) is "SIEMENS CSA HEADER". A CSA2 blob starts
with "SV10" and 4 unused bytes; then uint32 tag count and an unused uint32; each
tag is a 64-byte name, int32 VM, 4-byte VR, int32 SyngoDT, int32 item count and
an int32 check value; each item is four int32 (the second is the value's length
in CSA2) and the value, padded to a multiple of 4 bytes. The older CSA1 layout is
left to nibabel.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["csa_image_header", "mosaic_count", "parse_csa2", "slice_normal_vector"]

_CREATOR = "SIEMENS CSA HEADER"
_MAX_TAGS = 1024  # a real image header has about 100: more means a damaged blob


def _image_blob(ds: Any) -> bytes | None:
    for block in range(0x10, 0x100):
        creator = ds.get((0x0029, block))
        if creator is not None and str(creator.value).strip().upper() == _CREATOR:
            element = ds.get((0x0029, (block << 8) | 0x10))
            value = None if element is None else element.value
            return bytes(value) if isinstance(value, bytes | bytearray) else None
    return None


def parse_csa2(blob: bytes) -> dict[str, list[str]] | None:
    """Tag name -> its non-empty string items, or None when ``blob`` is not CSA2."""
    if blob[:4] != b"SV10":
        return None
    pos = 8
    (n_tags,) = struct.unpack_from("<I", blob, pos)
    if not 0 < n_tags <= _MAX_TAGS:
        raise ValueError(f"CSA header with {n_tags} tags")
    pos += 8
    out: dict[str, list[str]] = {}
    for _ in range(n_tags):
        name, _vm, _vr, _dt, n_items, _check = struct.unpack_from("<64si4s3i", blob, pos)
        pos += 84
        if not 0 <= n_items <= 1024:
            raise ValueError(f"CSA tag with {n_items} items")
        items = []
        for _ in range(n_items):
            length = struct.unpack_from("<4i", blob, pos)[1]
            pos += 16
            if length < 0 or pos + length > len(blob):
                raise ValueError("CSA item runs past the end of the header")
            text = blob[pos : pos + length].split(b"\0", 1)[0].decode("latin-1").strip()
            if text:
                items.append(text)
            pos += (length + 3) // 4 * 4
        out[name.split(b"\0", 1)[0].decode("latin-1")] = items
    return out


def csa_image_header(ds: Any) -> dict[str, list[str]] | None:
    """The image CSA header of ``ds`` (None when absent or unreadable)."""
    blob = _image_blob(ds)
    if not blob:
        return None
    try:
        parsed = parse_csa2(blob)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    if parsed is not None:
        return parsed
    return _csa1_via_nibabel(ds)


def _csa1_via_nibabel(ds: Any) -> dict[str, list[str]] | None:
    import warnings

    # nibabel warns on importing its (experimental) DICOM readers; the CSA parser is stable.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader

        try:
            header = csareader.get_csa_header(ds, "image")
        except Exception:  # a damaged blob: the caller falls back to the standard tags
            return None
    if not header:
        return None
    return {
        name: [str(v).strip() for v in tag.get("items", []) if str(v).strip()]
        for name, tag in header.get("tags", {}).items()
    }


def mosaic_count(csa: dict[str, list[str]]) -> int | None:
    """NumberOfImagesInMosaic, when present and a positive integer."""
    items = csa.get("NumberOfImagesInMosaic") or []
    try:
        n = int(float(items[0]))
    except (IndexError, ValueError):
        return None
    return n if n > 0 else None


def slice_normal_vector(csa: dict[str, list[str]]) -> tuple[float, float, float] | None:
    """SliceNormalVector as three floats, when present."""
    items = csa.get("SliceNormalVector") or []
    try:
        x, y, z = (float(v) for v in items[:3])
    except ValueError:
        return None
    return (x, y, z) if len(items) >= 3 else None
