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
from medrecon.io.dicom.header import SliceHeader

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


def _volumes(plan: StackPlan, derived: list[SliceHeader]) -> tuple[int, int]:
    """(derived volumes, all volumes) of a plan: slices per position group count volumes."""
    groups = plan.position_groups()
    per_position = max(len(g) for g in groups)
    ids = {id(r) for r in derived}
    n_derived = max(sum(1 for r in g if id(r) in ids) for g in groups)
    return n_derived, per_position


def split_derived_diffusion(plans: list[StackPlan], mode: str = "drop") -> list[StackPlan]:
    """Remove (``"drop"``), separate (``"split"``) or keep Philips derived diffusion frames."""
    if mode not in DERIVED_DWI:
        raise ValueError(f"derived_dwi must be one of {DERIVED_DWI}, got {mode!r}")
    out: list[StackPlan] = []
    for plan in plans:
        derived = [r for r in plan.records if is_derived_diffusion(r)]
        if not derived or len(derived) == len(plan.records):
            out.append(plan)  # none, or an isotropic series of its own: kept as is
            continue
        n_derived, n_volumes = _volumes(plan, derived)
        if n_derived == 1 and n_volumes - n_derived < 2:
            out.append(plan)  # a b=0 + trace pair: dcm2niix keeps both
            continue
        ids = {id(r) for r in derived}
        rest = [r for r in plan.records if id(r) not in ids]
        note = (
            f"{n_derived} derived isotropic (trace/ADC) diffusion volume(s) found among "
            f"{n_volumes} (Philips; DiffusionDirectionality ISOTROPIC or b > 0 with zero "
            "gradient)"
        )
        if mode == "keep":
            plan.notes = [*getattr(plan, "notes", []), f"{note}: kept (derived_dwi='keep')"]
            plan.vendor_facts = {
                **getattr(plan, "vendor_facts", {}),
                "DerivedDiffusionVolumes": "kept",
                "DerivedDiffusionVolumeCount": n_derived,
            }
            out.append(plan)
            continue
        kept = replace(
            plan,
            records=rest,
            copies=[(k, c) for k, c in plan.copies if id(k) not in ids],
            distinguishing=dict(plan.distinguishing),
        )
        kept.notes = [*getattr(plan, "notes", []), f"{note}: removed, as dcm2niix does"]
        kept.vendor_facts = {
            **getattr(plan, "vendor_facts", {}),
            "DerivedDiffusionVolumes": "removed" if mode == "drop" else "separate volume",
            "DerivedDiffusionVolumeCount": n_derived,
        }
        out.append(kept)
        log.info("series %s: %s", plan.first.series_number, note)
        if mode == "split":
            alone = StackPlan(
                records=derived,
                copies=[(k, c) for k, c in plan.copies if id(k) in ids],
                distinguishing={**plan.distinguishing, "derived": "isotropic"},
            )
            alone.notes = [f"{note}: written as this separate volume (derived_dwi='split')"]
            alone.vendor_facts = {"DerivedDiffusionVolumes": "this volume"}
            out.append(alone)
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
