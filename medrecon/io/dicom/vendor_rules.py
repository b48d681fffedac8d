"""The vendor rules, applied where the loader calls them (small hooks, one place).

- ``apply_plan_rules`` (after grouping, before summaries or decoding): Philips
  derived diffusion frames removed or split off; GE epi_pepolar polarities split.
- ``vendor_scaling`` (when rescaling): Philips precise or display values.
- ``plan_notes`` / ``plan_facts``: what a rule did, for ``meta.warnings`` and
  for ``meta.extra["vendor"]`` (copied into the ``convert`` sidecar).
"""

from __future__ import annotations

from medrecon.io.dicom.ge import flip_reversed_rows, split_pepolar
from medrecon.io.dicom.group import StackPlan
from medrecon.io.dicom.philips import (
    DERIVED_DWI,
    PHILIPS_SCALING,
    precise_note,
    scale_factors,
    split_derived_diffusion,
)

__all__ = [
    "DERIVED_DWI",
    "PHILIPS_SCALING",
    "apply_plan_rules",
    "check_options",
    "flip_reversed_rows",
    "plan_dropped",
    "plan_facts",
    "plan_notes",
    "precise_note",
    "scale_factors",
]


def check_options(philips_scaling: str, derived_dwi: str) -> None:
    if philips_scaling not in PHILIPS_SCALING:
        raise ValueError(
            f"philips_scaling must be one of {PHILIPS_SCALING}, got {philips_scaling!r}"
        )
    if derived_dwi not in DERIVED_DWI:
        raise ValueError(f"derived_dwi must be one of {DERIVED_DWI}, got {derived_dwi!r}")


def apply_plan_rules(plans: list[StackPlan], *, derived_dwi: str = "drop") -> list[StackPlan]:
    """The plan-level vendor rules, in a fixed order."""
    plans = split_derived_diffusion(plans, derived_dwi)
    return split_pepolar(plans)


def plan_notes(plan: StackPlan) -> list[str]:
    """Warnings the plan-level rules attached to ``plan``."""
    return list(getattr(plan, "notes", []))


def plan_dropped(plan: StackPlan) -> list:
    """Files whose every slice a plan-level rule removed (``SkippedFile`` list)."""
    return list(getattr(plan, "dropped_files", []))


def plan_facts(plan: StackPlan) -> dict[str, object]:
    """Sidecar facts the plan-level rules attached to ``plan``."""
    return dict(getattr(plan, "vendor_facts", {}))
