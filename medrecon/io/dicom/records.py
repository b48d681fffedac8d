"""The slice record (one 2D slice) that every stage after the header pass works on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from medrecon.io.dicom.vendor import VendorInfo

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pydicom.dataset import Dataset

__all__ = ["SliceHeader", "with_position"]

_NO_VENDOR_FACTS = VendorInfo()  # frozen: one shared default


@dataclass(frozen=True)
class SliceHeader:
    """One 2D slice, as its header describes it (LPS patient coordinates)."""

    path: str
    frame: int | None  # frame of a multi-frame file, tile of a mosaic, None otherwise
    kind: str  # "single" | "multiframe" | "mosaic"
    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str | None
    modality: str
    series_number: int | None
    series_description: str
    image_type: tuple[str, ...]
    rows: int
    cols: int
    iop: tuple[float, ...]  # row cosine (3) then column cosine (3)
    ipp: tuple[float, float, float]
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slope: float
    intercept: float
    echo_number: int | None
    echo_time: float | None
    temporal: tuple[Any, ...]  # sorts repeated acquisitions at one position
    instance_number: int | None
    transfer_syntax: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    pixel_offset: int | None  # byte offset of native little-endian pixels (fast path)
    pixel_length: int | None
    mosaic_tiles: int  # tiles per mosaic side (1 unless a mosaic)
    slice_thickness: float | None
    spacing_between_slices: float | None
    gantry_tilt: float | None
    n_frames: int  # frames in the file
    samples_per_pixel: int = 1  # 3 for colour (RGB after decoding)
    vendor: VendorInfo = _NO_VENDOR_FACTS  # private/vendor facts for the vendor rules
    #: UIDs blank or missing in the file (see uids.py); series_uid is then derived.
    uid_fallback: tuple[str, ...] = ()
    body_part: str = ""  # BodyPartExamined, checked against the pipeline's body_parts
    #: The file's header as a DICOM SEG references it (sources.py), when the read kept it;
    #: the records of one file share it.
    header: Dataset | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, int]:
        """Identifies one stored slice: the same object read twice has the same key."""
        return (self.series_uid, self.sop_instance_uid, -1 if self.frame is None else self.frame)

    @property
    def location(self) -> str:
        """Human-readable place of this slice for messages."""
        return self.path if self.frame is None else f"{self.path} [frame {self.frame + 1}]"


def with_position(rec: SliceHeader, ipp: tuple[float, float, float], **changes: Any) -> SliceHeader:
    """A copy of ``rec`` at another position (used for mosaic tiles)."""
    return replace(rec, ipp=ipp, **changes)
