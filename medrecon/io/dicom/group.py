"""Group slice records into stacks: one stack becomes one (3D or 4D) volume.

A series (SeriesInstanceUID) is split further, as Slicer and dcm2niix do, by
slice orientation, image size, image type (values 3+ of ImageType / FrameType)
and echo; what sets the parts apart is recorded as ``distinguishing``. Repeated
acquisitions at the same positions (time points) stay together and become a 4D
volume later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medrecon.io.dicom.geometry import slice_normal
from medrecon.io.dicom.records import SliceHeader

__all__ = ["StackPlan", "group_slices", "orientation_name", "POSITION_TOL_MM"]

_IOP_TOL = 1e-3  # cosines closer than this are one orientation (scanner float noise)
POSITION_TOL_MM = 0.01  # slices nearer than this along the normal share a position


@dataclass
class StackPlan:
    """Slices of one future volume, before any pixel is read."""

    records: list[SliceHeader]
    #: Exact re-reads of a slice already in ``records`` (same SOP instance and frame).
    copies: list[tuple[SliceHeader, SliceHeader]] = field(default_factory=list)
    distinguishing: dict[str, Any] = field(default_factory=dict)

    @property
    def first(self) -> SliceHeader:
        return self.records[0]

    @property
    def normal(self) -> np.ndarray:
        return slice_normal(self.first.iop)

    def position_groups(self, records: list[SliceHeader] | None = None) -> list[list[SliceHeader]]:
        """Records grouped by position along the normal (ascending), each group in time order."""
        recs = self.records if records is None else records
        normal = self.normal
        along = np.array([np.dot(r.ipp, normal) for r in recs])
        order = sorted(range(len(recs)), key=lambda i: (along[i], recs[i].temporal))
        groups: list[list[SliceHeader]] = []
        last = None
        for i in order:
            if last is None or along[i] - last > POSITION_TOL_MM:
                groups.append([])
                last = along[i]
            groups[-1].append(recs[i])
        for g in groups:
            g.sort(key=lambda r: (r.temporal, r.instance_number or 0, r.path, r.frame or 0))
        return groups


def orientation_name(iop: tuple[float, ...]) -> str:
    """'axial', 'coronal', 'sagittal' or 'oblique' from the slice normal."""
    n = np.abs(slice_normal(iop))
    axis = int(np.argmax(n))
    if n[axis] < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _type_key(rec: SliceHeader) -> tuple[str, ...]:
    # Enhanced objects' FrameType is per frame and canonical: all of values 3+ count.
    # Classic ImageType values 4+ are vendor notes (GE 'ADD', 'HELIX'...) that vary
    # within one stack, so only value 3 (M/P/AXIAL...) splits it.
    return tuple(rec.image_type[2:] if rec.kind == "multiframe" else rec.image_type[2:3])


def _echo_key(rec: SliceHeader) -> float | int | None:
    if rec.echo_number is not None:
        return rec.echo_number
    return None if rec.echo_time is None else round(rec.echo_time, 3)


def _split_key(rec: SliceHeader, orientations: list[tuple[float, ...]]) -> tuple[Any, ...]:
    index = next(
        (
            i
            for i, ref in enumerate(orientations)
            if max(abs(a - b) for a, b in zip(rec.iop, ref)) < _IOP_TOL
        ),
        None,
    )
    if index is None:
        orientations.append(rec.iop)
        index = len(orientations) - 1
    return (index, (rec.rows, rec.cols), _type_key(rec), _echo_key(rec))


def _distinguishing(
    key: tuple[Any, ...], siblings: list[tuple[Any, ...]], rec: SliceHeader
) -> dict:
    out: dict[str, Any] = {}
    names = ("orientation", "size", "image_type", "echo")
    for pos, name in enumerate(names):
        if len({k[pos] for k in siblings}) > 1:
            if name == "orientation":
                out[name] = orientation_name(rec.iop)
            elif name == "size":
                out[name] = f"{rec.cols}x{rec.rows}"
            elif name == "image_type":
                out[name] = "_".join(key[2]) or "NONE"
            elif rec.echo_number is not None:
                out["echo_number"] = rec.echo_number
            else:
                out["echo_time_ms"] = rec.echo_time
    return out


def group_slices(slices: list[SliceHeader]) -> list[StackPlan]:
    """Split slice records into stacks, in a stable order (series number, then UID)."""
    seen: dict[tuple[str, str, int], SliceHeader] = {}
    copies: dict[tuple[str, str, int], list[SliceHeader]] = {}
    unique: list[SliceHeader] = []
    for rec in slices:
        if rec.key in seen:
            copies.setdefault(rec.key, []).append(rec)
        else:
            seen[rec.key] = rec
            unique.append(rec)

    by_series: dict[str, list[SliceHeader]] = {}
    for rec in unique:
        by_series.setdefault(rec.series_uid, []).append(rec)

    plans: list[StackPlan] = []
    for records in by_series.values():
        orientations: list[tuple[float, ...]] = []
        parts: dict[tuple[Any, ...], list[SliceHeader]] = {}
        for rec in records:
            parts.setdefault(_split_key(rec, orientations), []).append(rec)
        keys = list(parts)
        for key in sorted(keys, key=repr):
            recs = parts[key]
            plan = StackPlan(records=recs, distinguishing=_distinguishing(key, keys, recs[0]))
            plan.copies = [(seen[r.key], c) for r in recs for c in copies.get(r.key, [])]
            plans.append(plan)
    plans.sort(
        key=lambda p: (
            p.first.series_number if p.first.series_number is not None else 1 << 30,
            p.first.series_uid,
            repr(sorted(p.distinguishing.items())),
        )
    )
    return plans
