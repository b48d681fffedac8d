"""Philips rules: precise (floating-point) scaling and derived diffusion frames.

Scaling. Philips MR files carry, beside RescaleSlope RS / RescaleIntercept RI
(the *display* value DV = SV * RS + RI of a stored value SV), a private Scale
Slope SS (2005,100E; in enhanced files in each frame's private sequence
(2005,140F)). The *precise* value, the scanner's floating-point value before it
was scaled to integers for display, is FP = DV / (RS * SS). dcm2niix writes FP
by default (``-p y``) and DV with ``-p n``; medrecon does the same with
``philips_scaling="precise"`` (default) or ``"display"``.

Derived diffusion frames. Philips may append the isotropic (trace/ADC) image to
a diffusion series. dcm2niix recognises it by Diffusion Directionality
(0018,9075) ISOTROPIC, or by a non-zero b-value with a zero gradient direction,
and removes it from the 4D diffusion volume, except when it is one of only two
volumes (a b=0 + trace pair) or when every volume is one (an isotropic series).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from medrecon.io.dicom.group import StackPlan
from medrecon.io.dicom.records import SliceHeader
from medrecon.io.report import SkippedFile

__all__ = [
    "PHILIPS_SCALING",
    "DERIVED_DWI",
    "is_derived_diffusion",
    "scale_factors",
    "split_derived_diffusion",
]

log = logging.getLogger(__name__)

PHILIPS_SCALING = ("precise", "display")
DERIVED_DWI = ("drop", "split", "keep")
_ZERO = 1e-6  # gradient components and b-values below this count as zero


def _one_or_all(values: list[float]) -> float | list[float]:
    unique = sorted(set(values))
    return unique[0] if len(unique) == 1 else unique


def scale_factors(
    records: list[SliceHeader], mode: str = "precise"
) -> tuple[np.ndarray, np.ndarray, dict[str, object], list[str]]:
    """Per-slice slope and intercept to apply, the sidecar facts, and warnings.

    With ``mode="precise"``, a Philips slice with a Scale Slope SS gets slope
    1 / SS and intercept RI / (RS * SS) (so SV * slope + intercept = FP); other
    slices keep RescaleSlope/Intercept.
    """
    if mode not in PHILIPS_SCALING:
        raise ValueError(f"philips_scaling must be one of {PHILIPS_SCALING}, got {mode!r}")
    slopes = np.array([r.slope for r in records], dtype=np.float64)
    intercepts = np.array([r.intercept for r in records], dtype=np.float64)
    ss = [r.vendor.philips_scale_slope for r in records]
    if not any(s is not None for s in ss):
        return slopes, intercepts, {}, []
    warnings: list[str] = []
    facts: dict[str, object] = {
        "PhilipsRescaleSlope": _one_or_all([float(v) for v in slopes]),
        "PhilipsRescaleIntercept": _one_or_all([float(v) for v in intercepts]),
        "PhilipsScaleSlope": _one_or_all([float(s) for s in ss if s is not None]),
        "PhilipsScaling": mode,
        "UsePhilipsFloatNotDisplayScaling": int(mode == "precise"),
    }
    if mode == "display":
        return slopes, intercepts, facts, warnings
    usable = np.array([s is not None and s * rs != 0 for s, rs in zip(ss, slopes)])
    if not usable.all():
        facts["PhilipsScaling"] = "precise (display values where RS x SS is 0 or SS missing)"
        warnings.append(
            f"{int((~usable).sum())} of {len(records)} slice(s) have no usable Philips Scale "
            "Slope (missing, or RescaleSlope x ScaleSlope = 0): display values kept for those"
        )
    ss_arr = np.array([s if s is not None else 1.0 for s in ss], dtype=np.float64)
    denom = np.where(usable, slopes * ss_arr, 1.0)
    precise_slope = np.where(usable, 1.0 / ss_arr, slopes)
    precise_intercept = np.where(usable, intercepts / denom, intercepts)
    return precise_slope, precise_intercept, facts, warnings


def is_derived_diffusion(rec: SliceHeader) -> bool:
    """True for a Philips derived isotropic (trace/ADC) diffusion slice (dcm2niix's rule)."""
    v = rec.vendor
    if v.manufacturer != "PHILIPS":
        return False
    if v.diffusion_directionality == "ISOTROPIC":
        return True
    if v.b_value is None or v.b_value <= _ZERO or v.gradient is None:
        return False
    return all(abs(g) <= _ZERO for g in v.gradient)


def _volume_count(plan: StackPlan, records: list[SliceHeader]) -> int:
    """Volumes that ``records`` of ``plan`` make: the most slices at one position."""
    groups = plan.position_groups(records) if records else []
    return max((len(g) for g in groups), default=0)


def _annotate(plan: StackPlan, note: str, facts: dict[str, object]) -> None:
    plan.notes = [*getattr(plan, "notes", []), note]
    plan.vendor_facts = {**getattr(plan, "vendor_facts", {}), **facts}


def split_derived_diffusion(plans: list[StackPlan], mode: str = "drop") -> list[StackPlan]:
    """Remove (``"drop"``), separate (``"split"``) or keep Philips derived diffusion frames.

    Judged per series, as dcm2niix does: grouping may already have put the derived
    frames in a stack of their own (their ImageType/FrameType differ).
    """
    if mode not in DERIVED_DWI:
        raise ValueError(f"derived_dwi must be one of {DERIVED_DWI}, got {mode!r}")
    by_series: dict[str, list[int]] = {}
    for i, plan in enumerate(plans):
        by_series.setdefault(plan.first.series_uid, []).append(i)
    replaced: dict[int, list[StackPlan]] = {}
    for indices in by_series.values():
        derived = {i: [r for r in plans[i].records if is_derived_diffusion(r)] for i in indices}
        n_derived = sum(_volume_count(plans[i], derived[i]) for i in indices)
        n_all = sum(_volume_count(plans[i], plans[i].records) for i in indices)
        if n_derived == 0 or n_derived == n_all:
            continue  # none, or an isotropic series: dcm2niix keeps it
        if n_derived == 1 and n_all - n_derived < 2:
            continue  # a b=0 + trace pair: dcm2niix keeps both
        note = (
            f"{n_derived} derived isotropic (trace/ADC) diffusion volume(s) among {n_all} "
            "(Philips: DiffusionDirectionality ISOTROPIC, or b > 0 with zero gradient)"
        )
        done = {"drop": "removed, as dcm2niix does", "split": "written as a separate volume"}
        facts = {
            "DerivedDiffusionVolumes": {"drop": "removed", "split": "separate volume"}.get(
                mode, "kept"
            ),
            "DerivedDiffusionVolumeCount": n_derived,
        }
        log.info("series %s: %s", plans[indices[0]].first.series_number, note)
        host: StackPlan | None = None  # the plan of the acquired volumes carries the notes
        dropped_paths: set[str] = set()
        for i in indices:
            plan = plans[i]
            ids = {id(r) for r in derived[i]}
            rest = [r for r in plan.records if id(r) not in ids]
            if mode == "keep" or not ids:
                host = host or (plan if rest else None)
                continue
            parts = []
            if rest:
                kept = replace(
                    plan,
                    records=rest,
                    copies=[(k, c) for k, c in plan.copies if id(k) not in ids],
                    distinguishing=dict(plan.distinguishing),
                )
                kept.notes = list(getattr(plan, "notes", []))
                kept.vendor_facts = dict(getattr(plan, "vendor_facts", {}))
                parts.append(kept)
                host = host or kept
            if mode == "split":
                alone = StackPlan(
                    records=derived[i],
                    copies=[(k, c) for k, c in plan.copies if id(k) in ids],
                    distinguishing={**plan.distinguishing, "derived": "isotropic"},
                )
                _annotate(alone, f"{note}: this is the derived volume", facts)
                parts.append(alone)
            else:
                kept_paths = {r.path for r in rest}
                dropped_paths |= {r.path for r in derived[i]} - kept_paths
            replaced[i] = parts
        if host is None:
            continue
        verb = done.get(mode, "kept (derived_dwi='keep')")
        _annotate(host, f"{note}: {verb}", facts)
        host.dropped_files = [
            SkippedFile(
                path,
                "Philips derived isotropic (trace/ADC) diffusion image, removed from its "
                "series as dcm2niix does (derived_dwi='split' keeps it)",
            )
            for path in sorted(dropped_paths)
        ]
    out: list[StackPlan] = []
    for i, plan in enumerate(plans):
        out.extend(replaced.get(i, [plan]))
    return out


def precise_note(facts: dict[str, object]) -> str | None:
    """A warning line saying which Philips values the volume holds."""
    if not facts:
        return None
    if facts["PhilipsScaling"] == "display":
        return "Philips display values (RescaleSlope/Intercept) kept (philips_scaling='display')"
    return (
        "Philips precise floating-point values: display value / (RescaleSlope x ScaleSlope "
        f"(2005,100E) = {facts['PhilipsScaleSlope']}), as dcm2niix; "
        "philips_scaling='display' keeps the display values"
    )
