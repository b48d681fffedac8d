"""CT contrast phases as per-structure attenuation: the same anatomy as a non-contrast,
late-arterial, portal-venous or delayed scan.

Iodinated contrast changes the mean attenuation of blood and of enhancing organs and
little else. A phase is therefore simulated by moving the mean HU of each enhancing
structure to a value typical of that phase while keeping its texture (every voxel
shifts by the same amount). The ranges are typical adult values at 100-120 kVp from
the radiology literature (mean HU of a region of interest); real patients vary more.

Structures are found by the label names of the source label map (TotalSegmentator's
class names); a name not in :data:`GROUPS` keeps its attenuation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["GROUPS", "PHASES", "apply_phase", "phase_groups", "phase_targets"]

#: Enhancing structure group -> source label names (TotalSegmentator v1/v2 and MR names).
GROUPS: dict[str, tuple[str, ...]] = {
    "artery": (
        "aorta",
        "iliac_artery_left",
        "iliac_artery_right",
        "pulmonary_artery",
        "common_carotid_artery_left",
        "common_carotid_artery_right",
        "brachiocephalic_trunk",
        "subclavian_artery_left",
        "subclavian_artery_right",
    ),
    "vein": (
        "inferior_vena_cava",
        "iliac_vena_left",
        "iliac_vena_right",
        "superior_vena_cava",
        "brachiocephalic_vein_left",
        "brachiocephalic_vein_right",
    ),
    "portal": ("portal_vein_and_splenic_vein",),
    "liver": ("liver",),
    "spleen": ("spleen",),
    "kidney": ("kidney_left", "kidney_right"),
    "pancreas": ("pancreas",),
    "adrenal": ("adrenal_gland_left", "adrenal_gland_right"),
}

#: Phase -> group -> (low, high) mean HU.
PHASES: dict[str, dict[str, tuple[float, float]]] = {
    "non_contrast": {
        "artery": (35, 50),
        "vein": (35, 50),
        "portal": (35, 50),
        "liver": (50, 65),
        "spleen": (40, 52),
        "kidney": (28, 40),
        "pancreas": (35, 48),
        "adrenal": (15, 35),
    },
    "arterial": {
        "artery": (230, 400),
        "vein": (60, 130),
        "portal": (110, 180),
        "liver": (65, 90),
        "spleen": (90, 140),
        "kidney": (140, 220),
        "pancreas": (90, 130),
        "adrenal": (50, 80),
    },
    "portal_venous": {
        "artery": (130, 200),
        "vein": (110, 170),
        "portal": (150, 200),
        "liver": (95, 130),
        "spleen": (105, 135),
        "kidney": (150, 200),
        "pancreas": (80, 110),
        "adrenal": (55, 85),
    },
    "delayed": {
        "artery": (95, 130),
        "vein": (95, 130),
        "portal": (95, 130),
        "liver": (80, 100),
        "spleen": (85, 105),
        "kidney": (110, 160),
        "pancreas": (65, 90),
        "adrenal": (45, 70),
    },
}


def phase_groups(source_labels: Mapping[int, str]) -> dict[str, tuple[int, ...]]:
    """group -> the source label values (from ``value -> name``) that belong to it."""
    by_name = {name: value for value, name in source_labels.items()}
    out = {}
    for group, names in GROUPS.items():
        values = tuple(sorted(by_name[n] for n in names if n in by_name))
        if values:
            out[group] = values
    return out


def phase_targets(phase: str, rng: np.random.Generator | None = None) -> dict[str, float]:
    """group -> target mean HU: drawn uniformly in the phase's ranges, or their middles."""
    if phase not in PHASES:
        raise ValueError(f"unknown contrast phase {phase!r}; choose from {sorted(PHASES)}")
    ranges = PHASES[phase]
    if rng is None:
        return {g: 0.5 * (lo + hi) for g, (lo, hi) in ranges.items()}
    return {g: float(rng.uniform(lo, hi)) for g, (lo, hi) in ranges.items()}


def apply_phase(
    image: np.ndarray,
    tissue: np.ndarray,
    groups: Mapping[str, tuple[int, ...]],
    targets: Mapping[str, float],
    *,
    scale: float = 1.0,
    offset: float = 0.0,
) -> np.ndarray:
    """``image`` with each group's voxels (``tissue`` in its values) shifted so that
    their mean becomes the target. ``image`` holds ``HU * scale + offset`` (1 and 0
    for HU; the window's mapping for a windowed model input), so targets stay in HU.
    Each structure of a group is moved on its own: a kidney keeps its own texture
    and the pair ends at one mean."""
    out = np.array(image, dtype=np.float32, copy=True)
    for group, values in groups.items():
        if group not in targets:
            continue
        goal = targets[group] * scale + offset
        for value in values:
            mask = tissue == value
            if mask.any():
                out[mask] += np.float32(goal - float(out[mask].mean()))
    return out
