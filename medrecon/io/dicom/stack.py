"""Turn a stack plan into a Volume: decode, check duplicates, place on a grid.

Slice order comes from ImagePositionPatient projected on the slice normal,
never from InstanceNumber or file names.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from medrecon.errors import DicomError, DuplicateSliceError, UnevenSpacingError
from medrecon.io.dicom import vendor_rules
from medrecon.io.dicom.colour import COLOUR_AXIS, stack_colour
from medrecon.io.dicom.geometry import StackGeometry, plan_stack_geometry
from medrecon.io.dicom.group import StackPlan, orientation_name
from medrecon.io.dicom.pixels import decode_slices, rescale_stack
from medrecon.io.dicom.records import SliceHeader
from medrecon.io.dicom.resample import resample_stack
from medrecon.io.dicom.sources import source_headers
from medrecon.io.dicom.uids import fallback_warning, missing_in_records
from medrecon.io.report import SeriesSummary, SkippedFile
from medrecon.space import LPS_TO_RAS
from medrecon.volume import Volume, VolumeMeta

__all__ = ["assemble_stack", "summarize_stack"]


def _where(rec: SliceHeader) -> str:
    desc = rec.series_description or "no description"
    return f"series {rec.series_number} '{desc}' ({rec.series_uid})"


def _layout(groups: list[list[SliceHeader]]) -> tuple[int, list[list[SliceHeader]]]:
    """Frames per position (1 for 3D) and the position groups left to dedupe.

    Every position holding the same number T > 1 of slices is a 4D stack. So is a
    single position holding T slices that are distinct acquisitions (own temporal or
    instance keys), e.g. a one-slice dynamic series, rather than T copies of one slice.
    """
    counts = {len(g) for g in groups}
    if (
        len(counts) == 1
        and (n := counts.pop()) > 1
        and (len(groups) > 1 or len({r.temporal for r in groups[0]}) == n)
    ):
        return n, groups
    return 1, groups


def _geometry(plan: StackPlan, reps: list[SliceHeader]) -> StackGeometry:
    first = plan.first
    geometry, _ = plan_stack_geometry(
        first.iop,
        np.array([r.ipp for r in reps]),
        first.pixel_spacing,
        first.rows,
        first.cols,
        fallback_spacing=first.spacing_between_slices or first.slice_thickness or 1.0,
    )
    return geometry


def _frame_axis(groups: list[list[SliceHeader]]) -> str:
    recs = groups[0]
    fields = ("temporal position", "trigger time", "acquisition", "acquisition time", "instance")
    for i, name in enumerate(fields):
        if len({r.temporal[i] for r in recs}) == len(recs):
            return "time" if name in ("temporal position", "acquisition time") else name
    return "repetition"


def summarize_stack(plan: StackPlan, *, philips_scaling: str = "precise") -> SeriesSummary:
    """Describe the volume a plan will make, from headers only."""
    groups = plan.position_groups()
    frames, groups = _layout(groups)
    geometry = _geometry(plan, [g[0] for g in groups])
    warnings = list(geometry.warnings) + vendor_rules.plan_notes(plan)
    _, _, scaling, notes = vendor_rules.scale_factors(plan.records, philips_scaling)
    warnings += notes + [n for n in [vendor_rules.precise_note(scaling)] if n]
    warnings += sorted({r.vendor.note for r in plan.records if r.vendor.note})
    if (note := fallback_warning(plan.records)) is not None:
        warnings.append(note)
    if frames == 1:
        dup = sum(len(g) - 1 for g in groups)
        if dup:
            warnings.append(f"{dup} slice(s) share a position with another (compared on load)")
    if plan.copies:
        warnings.append(f"{len(plan.copies)} duplicate file(s) of the same image")
    shape = (*geometry.shape, frames) if frames > 1 else geometry.shape
    if plan.first.samples_per_pixel > 1:
        shape = (*geometry.shape, plan.first.samples_per_pixel)  # colour: (i, j, k, 3)
    first = plan.first
    return SeriesSummary(
        series_uid=first.series_uid,
        series_number=first.series_number,
        description=first.series_description,
        modality=first.modality,
        shape=tuple(int(s) for s in shape),
        spacing=(geometry.pixel_spacing[1], geometry.pixel_spacing[0], geometry.slice_spacing),
        n_slices=len(plan.records),
        n_files=len({r.path for r in plan.records}),
        orientation=orientation_name(first.iop),
        distinguishing=dict(plan.distinguishing),
        warnings=warnings,
        frame_axis=COLOUR_AXIS if plan.first.samples_per_pixel > 1 else None,
    )


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and np.array_equal(a, b)


def _drop_repeated_frames(
    groups: list[list[SliceHeader]], pixels: dict[int, np.ndarray]
) -> tuple[list[list[SliceHeader]], int]:
    """Remove time frames that are copies of an earlier frame.

    A copy has, at every position, the same pixels *and* the same acquisition keys
    (temporal position, trigger time, acquisition number and time, instance number)
    as the earlier frame: the same images stored again, e.g. re-encoded in another
    transfer syntax under new UIDs. A frame that is its own acquisition (own instance
    number, e.g. a GE diffusion or multiphase frame) is kept even when its pixels
    equal another's.
    """
    frames = len(groups[0])
    seen: set[bytes] = set()
    keep = []
    for t in range(frames):
        digest = hashlib.blake2b(digest_size=16)
        for g in groups:
            digest.update(repr(g[t].temporal).encode())
            arr = pixels[id(g[t])]  # native byte order: big-endian copies hash the same
            digest.update(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")).tobytes())
        if digest.digest() not in seen:  # 128-bit digest: equal digests mean equal frames
            seen.add(digest.digest())
            keep.append(t)
    return [[g[t] for t in keep] for g in groups], frames - len(keep)


def assemble_stack(
    plan: StackPlan,
    *,
    uneven: str = "resample",
    tilt: str = "correct",
    philips_scaling: str = "precise",
) -> tuple[Volume, list[SkippedFile]]:
    """Decode and place one stack; returns the volume and the files dropped from it.

    ``philips_scaling``: "precise" (Philips floating-point values, as dcm2niix) or
    "display" (RescaleSlope/Intercept only); see ``philips.scale_factors``.
    """
    pixels, failures = _decode(plan)
    warnings, dropped = _failure_notes(plan, failures)
    _check_copies(plan, pixels, warnings)
    good = _decoded_records(plan, pixels, failures)
    facts = vendor_rules.plan_facts(plan)
    if flipped := vendor_rules.flip_reversed_rows(good, pixels):  # GE epi_pepolar
        facts["RowsFlippedBack"] = flipped
    frames, groups = _drop_duplicates(plan, good, pixels, warnings)
    geometry = _checked_geometry(plan, groups, uneven=uneven, tilt=tilt)
    warnings = geometry.warnings + vendor_rules.plan_notes(plan) + warnings
    warnings += sorted({r.vendor.note for r in good if r.vendor.note})  # e.g. UIH grid
    if (note := fallback_warning([r for g in groups for r in g])) is not None:
        warnings.append(note)

    ordered = [g[t] for t in range(frames) for g in groups]  # frame-major
    values = _values(plan, ordered, pixels, frames, philips_scaling, facts, warnings)
    pixels.clear()  # the stored slices are no longer needed: free them before resampling
    array = _place(values, geometry, frames, colour=plan.first.samples_per_pixel > 1)
    if geometry.needs_resampling and values.dtype.kind in "iu":
        warnings.append("resampled values rounded to integers to keep the stored type")
    meta = _volume_meta(plan, ordered, groups, geometry, warnings, facts)
    return Volume(array, LPS_TO_RAS @ geometry.affine_lps(), meta), dropped


def _decode(plan: StackPlan) -> tuple[dict[int, np.ndarray | None], dict[str, str]]:
    """Stored pixels of every record and copy (by ``id``; None where its file failed)
    and ``{path: reason}`` for the files that could not be decoded."""
    records = plan.records + [c for _, c in plan.copies]
    arrays, failures = decode_slices(records)
    return {id(r): a for r, a in zip(records, arrays)}, failures


def _failure_notes(
    plan: StackPlan, failures: dict[str, str]
) -> tuple[list[str], list[SkippedFile]]:
    """Warnings for the undecodable files, and every file dropped from the stack."""
    warnings: list[str] = []
    dropped: list[SkippedFile] = vendor_rules.plan_dropped(plan)  # e.g. Philips trace files
    for path, reason in sorted(failures.items()):
        warnings.append(f"unreadable file {path} dropped ({reason}); treated as a missing slice")
        dropped.append(SkippedFile(path, f"corrupt or truncated pixel data: {reason}"))
    return warnings, dropped


def _check_copies(plan: StackPlan, pixels: dict[int, np.ndarray], warnings: list[str]) -> None:
    """Re-reads of one SOP instance must hold the same pixels; they are then dropped."""
    for kept, copy in plan.copies:
        if pixels.get(id(copy)) is None or pixels.get(id(kept)) is None:
            continue
        if not _same(pixels[id(kept)], pixels[id(copy)]):
            raise DuplicateSliceError(
                f"{_where(kept)}: {kept.location} and {copy.location} are the same image "
                "(same SOPInstanceUID) but hold different pixels. Remove the wrong copy."
            )
    if plan.copies:
        warnings.append(
            f"{len(plan.copies)} duplicate file(s) of the same image dropped: "
            + ", ".join(sorted({c.path for _, c in plan.copies})[:5])
        )


def _decoded_records(
    plan: StackPlan, pixels: dict[int, np.ndarray | None], failures: dict[str, str]
) -> list[SliceHeader]:
    """The records whose pixels decoded; none at all is an error."""
    good = [r for r in plan.records if pixels.get(id(r)) is not None]
    if not good:
        raise DicomError(
            f"{_where(plan.records[0])}: no slice could be decoded "
            f"({len(failures)} file(s) failed, e.g. {next(iter(failures.values()), '?')})."
        )
    return good


def _drop_duplicates(
    plan: StackPlan,
    good: list[SliceHeader],
    pixels: dict[int, np.ndarray],
    warnings: list[str],
) -> tuple[int, list[list[SliceHeader]]]:
    """Frames per position and the position groups, each holding one slice per frame.

    4D: time frames that repeat an earlier one are dropped. 3D: slices sharing a
    position must hold the same pixels (else DuplicateSliceError); the copies go.
    """
    frames, groups = _layout(plan.position_groups(good))
    if frames > 1:
        groups, repeats = _drop_repeated_frames(groups, pixels)
        if repeats:
            warnings.append(
                f"{repeats} repeated frame(s) identical to an earlier one dropped (same "
                "pixels and the same acquisition and instance numbers: the same images "
                "stored more than once)"
            )
        return len(groups[0]), groups
    for g in groups:
        for other in g[1:]:
            if not _same(pixels[id(g[0])], pixels[id(other)]):
                raise DuplicateSliceError(
                    f"{_where(g[0])}: {g[0].location} and {other.location} lie at the same "
                    "position but hold different pixels. If they are separate acquisitions, "
                    "move one to its own folder; otherwise remove the wrong file."
                )
        if len(g) > 1:
            warnings.append(
                f"duplicate slice at the position of {g[0].location} dropped "
                f"({', '.join(o.location for o in g[1:])}: identical pixels)"
            )
    return 1, [[g[0]] for g in groups]


def _checked_geometry(
    plan: StackPlan, groups: list[list[SliceHeader]], *, uneven: str, tilt: str
) -> StackGeometry:
    """The stack's grid; uneven spacing or a tilt is refused when the caller said so."""
    geometry = _geometry(plan, [g[0] for g in groups])
    where = _where(plan.first)
    if uneven == "error" and (geometry.uneven or geometry.missing_slices):
        raise UnevenSpacingError(
            f"{where}: {'; '.join(geometry.warnings)}. Resampling was refused (uneven='error'); "
            "load with uneven='resample' (the default) to put it on a uniform grid."
        )
    if tilt == "error" and geometry.tilt_deg:
        raise DicomError(
            f"{where}: slices are sheared by a gantry tilt of {geometry.tilt_deg:.2f} degrees; "
            "load with tilt='correct' (the default) to resample onto an orthogonal grid."
        )
    return geometry


def _values(
    plan: StackPlan,
    ordered: list[SliceHeader],
    pixels: dict[int, np.ndarray],
    frames: int,
    philips_scaling: str,
    facts: dict[str, object],
    warnings: list[str],
) -> np.ndarray:
    """Slices in ``ordered`` as one ``(slices, rows, cols[, 3])`` array of real values:
    colour samples as stored, grey values rescaled (the scaling goes into ``facts``)."""
    if plan.first.samples_per_pixel > 1:
        if frames > 1:
            raise DicomError(
                f"{_where(plan.first)}: a colour series with {frames} frames per position; "
                "medrecon loads colour as one (i, j, k, 3) volume. Split the frames into folders."
            )
        return stack_colour([pixels[id(r)] for r in ordered], _where(plan.first))
    slopes, intercepts, scaling, notes = vendor_rules.scale_factors(ordered, philips_scaling)
    values = rescale_stack([pixels[id(r)] for r in ordered], slopes, intercepts)
    facts.update(scaling)
    warnings += notes + [n for n in [vendor_rules.precise_note(scaling)] if n]
    return values


def _place(values: np.ndarray, geometry: StackGeometry, frames: int, *, colour: bool) -> np.ndarray:
    """The ``(i, j, k[, t | 3])`` array: each frame's slices put on the target grid."""
    n = len(values) // frames
    volumes = []
    for t in range(frames):
        block = values[t * n : (t + 1) * n]  # (slices, rows, cols[, 3])
        if geometry.needs_resampling:
            channels = [block[..., c] for c in range(3)] if colour else [block]
            grids = [resample_stack(ch, geometry) for ch in channels]  # (rows, cols, slices)
            if values.dtype.kind in "iu":
                grids = [np.rint(g).astype(values.dtype) for g in grids]
            grid = np.stack(grids, axis=-1) if colour else grids[0]
            volumes.append(np.swapaxes(grid, 0, 1))
        else:
            volumes.append(np.swapaxes(block, 0, 2))  # (cols, rows, slices[, 3])
    return volumes[0] if frames == 1 else np.stack(volumes, axis=-1)


def _volume_meta(
    plan: StackPlan,
    ordered: list[SliceHeader],
    groups: list[list[SliceHeader]],
    geometry: StackGeometry,
    warnings: list[str],
    facts: dict[str, object],
) -> VolumeMeta:
    first = plan.first
    colour = first.samples_per_pixel > 1
    frames = len(ordered) // len(groups)
    return VolumeMeta(
        modality=first.modality,
        series_uid=first.series_uid,
        series_number=first.series_number,
        description=first.series_description,
        study_uid=first.study_uid or None,
        frame_of_reference_uid=first.frame_of_reference_uid,
        source_files=sorted({r.path for r in ordered}),
        source_headers=source_headers(ordered),
        warnings=warnings,
        distinguishing=dict(plan.distinguishing),
        frame_axis=COLOUR_AXIS if colour else (_frame_axis(groups) if frames > 1 else None),
        gantry_tilt_deg=geometry.tilt_deg,
        extra={
            "n_source_slices": len(groups),
            "slice_thickness": first.slice_thickness,
            "transfer_syntaxes": sorted(Counter(r.transfer_syntax for r in ordered)),
            "image_type": list(first.image_type),
            "resampled": geometry.needs_resampling,
            **({"vendor": facts} if facts else {}),
            **({"missing_uids": missing} if (missing := missing_in_records(ordered)) else {}),
            **({"body_part": first.body_part} if first.body_part else {}),
        },
    )
