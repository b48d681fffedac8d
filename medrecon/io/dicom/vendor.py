"""Vendor facts read from a DICOM header, per slice, for the vendor rules.

``read_vendor`` collects the few private and vendor-specific attributes that
the rules in ``philips.py`` (precise scaling, derived diffusion frames) and
``ge.py`` (reversed phase-encoding polarity) need, so those rules work on slice
records like every other stage. The facts (which tag, which value means what)
follow dcm2niix's documented behaviour; see docs/loading.md, "Vendor rules and
scaling".
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medrecon.io.dicom.values import opt_float

__all__ = ["VendorInfo", "read_vendor", "manufacturer_of"]

_PHILIPS_SCALE_SLOPE = (0x2005, 0x100E)  # FL "Scale Slope" (Philips MR Imaging DD 001)
_PHILIPS_PRIVATE_FRAME = (0x2005, 0x140F)  # per-frame private sequence (enhanced files)
_PHILIPS_BVALUE = (0x2001, 0x1003)  # FL diffusion b-factor (classic files)
_PHILIPS_GRADIENT = ((0x2005, 0x10B0), (0x2005, 0x10B1), (0x2005, 0x10B2))  # FL RL, AP, FH
_GE_PULSE_SEQUENCE = (0x0019, 0x109C)  # LO, e.g. 'epi_pepolar'
_GE_USER_DATA_12 = (0x0019, 0x10B3)  # DS: pepolar mode 1, 2 or 3


@dataclass(frozen=True)
class VendorInfo:
    """Vendor facts of one slice (defaults: none known)."""

    manufacturer: str = ""  # "PHILIPS", "GE", "SIEMENS", "UIH"... (upper case, short)
    #: Philips private Scale Slope (2005,100E): precise value = display / (RS * SS).
    philips_scale_slope: float | None = None
    #: Diffusion Directionality (0018,9075): NONE, DIRECTIONAL, ISOTROPIC...
    diffusion_directionality: str | None = None
    b_value: float | None = None
    gradient: tuple[float, float, float] | None = None
    #: GE epi_pepolar mode from (0019,10B3): 1 all reversed, 2 reversed then
    #: forward (alternating), 3 forward then reversed; None when not pepolar.
    ge_pepolar_mode: int | None = None
    temporal_position: int | None = None  # (0020,0100), numbers the pepolar volumes
    note: str | None = None  # what a header-level vendor rule assumed, for meta.warnings


def manufacturer_of(ds: Dataset) -> str:
    """A short upper-case vendor name from Manufacturer (0008,0070)."""
    text = str(ds.get("Manufacturer", "") or "").upper().strip()
    words = text.replace("_", " ").split()
    if words and words[0] in ("GE", "GEMS"):  # "GE MEDICAL SYSTEMS", "GE HEALTHCARE"
        return "GE"
    for key, name in (
        ("PHILIPS", "PHILIPS"),
        ("GENERAL ELECTRIC", "GE"),
        ("SIEMENS", "SIEMENS"),
        ("UIH", "UIH"),
        ("UNITED IMAGING", "UIH"),
        ("CANON", "CANON"),
        ("TOSHIBA", "CANON"),
    ):
        if key in text:
            return name
    return text


def _float(value: Any, little_endian: bool = True) -> float | None:
    """A float from a parsed value, or from raw bytes (a private tag read as UN)."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) == 4:
            value = struct.unpack("<f" if little_endian else ">f", value)[0]
        elif len(value) == 8:
            value = struct.unpack("<d" if little_endian else ">d", value)[0]
        else:
            return None
    if isinstance(value, (list, tuple, MultiValue)):
        if not value:
            return None
        value = value[0]
    return opt_float(value)


def _decimal_string(element: Any) -> int | None:
    """An integer from a DS element, also when it was read as raw bytes (UN)."""
    if element is None:
        return None
    raw = element.value
    try:
        text = raw.decode("ascii") if isinstance(raw, bytes) else raw
        value = float(text[0] if isinstance(text, (list, tuple, MultiValue)) else text)
    except (TypeError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return round(value) if math.isfinite(value) else None


def _private(ds: Dataset | None, tag: tuple[int, int], little_endian: bool) -> float | None:
    """A private FL value (dcm2niix reads these by number, 4 bytes); None otherwise."""
    if ds is None or tag not in ds:
        return None
    element = ds[tag]
    if element.VR not in ("FL", "UN") or (
        isinstance(element.value, bytes) and len(element.value) != 4
    ):
        return None
    return _float(element.value, little_endian)


def _first_item(ds: Dataset | None, tag: Any) -> Dataset | None:
    if ds is None or tag not in ds:
        return None
    seq = ds[tag].value
    try:
        return seq[0] if len(seq) else None
    except TypeError:  # an unparsed private sequence
        return None


def _diffusion(
    where: list[Dataset | None], little_endian: bool
) -> tuple[str | None, float | None, tuple[float, float, float] | None]:
    """Directionality, b-value and gradient from the MR Diffusion Sequence or private tags."""
    directionality = b_value = gradient = None
    for ds in where:
        item = _first_item(ds, "MRDiffusionSequence")
        for source in (item, ds):
            if source is None:
                continue
            if directionality is None and "DiffusionDirectionality" in source:
                directionality = str(source.DiffusionDirectionality or "").upper() or None
            if b_value is None and "DiffusionBValue" in source:
                b_value = _float(source.DiffusionBValue)
            if gradient is None:
                grad_item = _first_item(source, "DiffusionGradientDirectionSequence")
                if grad_item is not None and "DiffusionGradientOrientation" in grad_item:
                    g = [_float(v) for v in grad_item.DiffusionGradientOrientation]
                    if len(g) == 3 and None not in g:
                        gradient = tuple(g)  # type: ignore[assignment]
    for ds in where:  # classic Philips files: private b-factor and direction
        if b_value is None:
            b_value = _private(ds, _PHILIPS_BVALUE, little_endian)
        if gradient is None and ds is not None and all(t in ds for t in _PHILIPS_GRADIENT):
            g = [_private(ds, t, little_endian) for t in _PHILIPS_GRADIENT]
            if None not in g:
                gradient = tuple(g)  # type: ignore[assignment]
    return directionality, b_value, gradient  # type: ignore[return-value]


def read_vendor(
    ds: Dataset, per_frame: Dataset | None = None, shared: Dataset | None = None
) -> VendorInfo:
    """The vendor facts of one slice: a classic file, or one frame of an enhanced file."""
    maker = manufacturer_of(ds)
    little = bool(getattr(ds, "is_little_endian", True) is not False)
    frame_groups = [per_frame, shared] if per_frame is not None or shared is not None else []
    scale = None
    # The Scale Slope is an MR value (Philips MR Imaging group): a CT keeps its HU.
    if maker == "PHILIPS" and str(ds.get("Modality", "") or "").strip().upper() == "MR":
        # Enhanced files keep it per frame in a private sequence; classic files at the top.
        for group in (*frame_groups, None):
            source = _first_item(group, _PHILIPS_PRIVATE_FRAME) if group is not None else ds
            scale = _private(source, _PHILIPS_SCALE_SLOPE, little)
            if scale is not None:
                break
        if scale == 0.0:
            scale = None
    private_frames = [_first_item(g, _PHILIPS_PRIVATE_FRAME) for g in frame_groups]
    directionality, b_value, gradient = _diffusion([*frame_groups, *private_frames, ds], little)
    pepolar = None
    if maker == "GE":
        sequence = ds.get(_GE_PULSE_SEQUENCE)
        name = sequence.value if sequence is not None else ""
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if "epi_pepolar" in str(name or ""):
            pepolar = _decimal_string(ds.get(_GE_USER_DATA_12))
    temporal = ds.get("TemporalPositionIdentifier")
    try:
        temporal_position = int(temporal) if temporal not in (None, "") else None
    except (TypeError, ValueError):
        temporal_position = None
    return VendorInfo(
        manufacturer=maker,
        philips_scale_slope=scale,
        diffusion_directionality=directionality,
        b_value=b_value,
        gradient=gradient,
        ge_pepolar_mode=pepolar,
        temporal_position=temporal_position,
    )
