"""Several part models' label maps -> one map in TotalSegmentator's numbering.

As TotalSegmentator does (``nnUNet_predict_image``): each part's values go through
a lookup table (part value -> global value, by class name), then are copied onto
the combined map wherever they are not background, part after part in the task's
order. The parts share no class, but two can claim one voxel (neighbouring
structures from different models, e.g. a vertebra and the spinal cord): the
later part wins. A part value its class map does not name becomes background.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from medrecon.errors import PipelineError

__all__ = ["MergeReport", "merge_parts", "part_lookup"]

log = logging.getLogger(__name__)


class MergeReport:
    """Counts from one merge: voxels a later part took over, unnamed part values."""

    def __init__(self) -> None:
        self.overwritten: dict[int, int] = {}
        self.unnamed: dict[int, list[int]] = {}


def part_lookup(part_classes: Mapping[int, str], global_classes: Mapping[int, str]) -> np.ndarray:
    """The table taking a part's values to the global ones (0 stays background)."""
    by_name = {name: value for value, name in global_classes.items()}
    missing = sorted(set(part_classes.values()) - set(by_name))
    if missing:
        raise PipelineError(
            f"part classes {missing} are not in the task's class map; the task table is "
            "inconsistent (report it)"
        )
    lut = np.zeros(max(part_classes) + 1, dtype=np.uint16)
    for value, name in part_classes.items():
        lut[value] = by_name[name]
    return lut


def merge_parts(
    parts: Sequence[np.ndarray],
    lookups: Sequence[np.ndarray],
    dtype: type = np.uint8,
    report: MergeReport | None = None,
) -> np.ndarray:
    """Merge the part label maps (same shape) in order; later parts win on overlap."""
    if not parts:
        raise ValueError("no part label maps to merge")
    combined = np.zeros(parts[0].shape, dtype=dtype)
    for index, (seg, lut) in enumerate(zip(parts, lookups, strict=True)):
        seg = np.asarray(seg)
        top = int(seg.max()) if seg.size else 0
        if top >= len(lut):
            # TotalSegmentator pads its table with zeros: such values become background.
            unnamed = sorted(int(v) for v in np.unique(seg[seg >= len(lut)]))
            if report is not None:
                report.unnamed[index] = unnamed
            lut = np.pad(lut, (0, top + 1 - len(lut)))
        mapped = lut[seg].astype(dtype, copy=False)
        claimed = mapped != 0
        if report is not None:
            report.overwritten[index] = int(np.count_nonzero(claimed & (combined != 0)))
        np.copyto(combined, mapped, where=claimed)
    return combined
