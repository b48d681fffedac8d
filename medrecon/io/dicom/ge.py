"""GE rule: ``epi_pepolar`` volumes acquired with reversed phase-encoding polarity.

GE's epi_pepolar research sequence (PulseSequenceName (0019,109C) containing
``epi_pepolar``) stores the reversed-polarity volumes with their rows in
reversed order. dcm2niix reads the mode from UserData12 (0019,10B3):

- 1: every volume is reversed;
- 2: reversed, then forward, alternating: volumes with an odd Temporal Position
  Identifier (0020,0100) are reversed;
- 3: forward, then reversed: volumes with an even, positive identifier are
  reversed.

It flips the rows of the reversed volumes back (data only; the geometry is
unchanged) and, for the alternating modes, writes the reversed volumes as a
series of their own (series number + 1000). medrecon does the same; the
reversed part carries ``distinguishing["phase_encoding_polarity"] = "reversed"``
instead of a new series number, so its file name says what it is.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from medrecon.io.dicom.group import StackPlan
from medrecon.io.dicom.records import SliceHeader

__all__ = ["flip_reversed_rows", "is_reversed_polarity", "split_pepolar"]

_MODES = {
    0: "forward (no volume reversed)",
    1: "all volumes reversed",
    2: "reversed/forward alternating",
    3: "forward/reversed",
}


def is_reversed_polarity(rec: SliceHeader) -> bool:
    """True when ``rec`` is a GE epi_pepolar slice stored with reversed row order."""
    mode = rec.vendor.ge_pepolar_mode
    volume = rec.vendor.temporal_position
    if mode == 1:
        return True
    if mode == 2:
        return volume is not None and volume > 0 and volume % 2 == 1
    if mode == 3:
        return volume is not None and volume > 0 and volume % 2 == 0
    return False


def _facts(mode: int, polarity: str | None) -> dict[str, object]:
    facts: dict[str, object] = {
        "GEPepolarMode": mode,
        "GEPepolarModeMeaning": _MODES.get(mode, "unknown (no volume flipped)"),
    }
    if polarity is not None:
        facts["PhaseEncodingPolarity"] = polarity
    return facts


def split_pepolar(plans: list[StackPlan]) -> list[StackPlan]:
    """Split alternating GE epi_pepolar stacks into forward and reversed parts."""
    out: list[StackPlan] = []
    for plan in plans:
        mode = plan.first.vendor.ge_pepolar_mode
        if mode is None:
            out.append(plan)
            continue
        reversed_ids = {id(r) for r in plan.records if is_reversed_polarity(r)}
        if mode == 1 or not reversed_ids or len(reversed_ids) == len(plan.records):
            polarity = "reversed" if reversed_ids else "forward"
            plan.vendor_facts = {**getattr(plan, "vendor_facts", {}), **_facts(mode, polarity)}
            if reversed_ids:
                plan.notes = [
                    *getattr(plan, "notes", []),
                    "GE epi_pepolar: reversed phase-encoding polarity; the reversed row "
                    "order was flipped back, as dcm2niix does",
                ]
            out.append(plan)
            continue
        for polarity in ("forward", "reversed"):
            want = polarity == "reversed"
            part = replace(
                plan,
                records=[r for r in plan.records if (id(r) in reversed_ids) == want],
                copies=[(k, c) for k, c in plan.copies if (id(k) in reversed_ids) == want],
                distinguishing={**plan.distinguishing, "phase_encoding_polarity": polarity},
            )
            part.vendor_facts = {**getattr(plan, "vendor_facts", {}), **_facts(mode, polarity)}
            note = (
                f"GE epi_pepolar ({_MODES[mode]}): the {polarity}-polarity volumes, split from "
                "the others as dcm2niix does"
            )
            if polarity == "reversed":
                note += "; their reversed row order was flipped back"
            part.notes = [*getattr(plan, "notes", []), note]
            out.append(part)
    return out


def flip_reversed_rows(records: list[SliceHeader], pixels: dict[int, np.ndarray]) -> int:
    """Flip the rows of reversed-polarity slices back in ``pixels``; returns how many."""
    n = 0
    for rec in records:
        arr = pixels.get(id(rec))
        if arr is not None and is_reversed_polarity(rec):
            pixels[id(rec)] = arr[::-1]
            n += 1
    return n
