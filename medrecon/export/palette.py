"""Overlay colours for the preview: every pair of shown labels clearly different.

Terminology colours (Slicer's, kept in every Slicer file) give neighbours such as
the two kidneys the same colour and liver and stomach nearly so. For the
preview, labels are taken largest first; each keeps its own colour when that is
at least ``min_distance`` (CIE76 ΔE, in CIELAB) from every colour already given
and saturated enough to stand out over grey, else it gets the nearest such colour
of an sRGB grid. The distance is the first rung of a descending ladder (25, 22,
20, ...) that every label can meet: ΔE 25 when that fits (clearly different at a
glance, and most terminology colours stay), about ΔE 20 for 59 labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MIN_CHROMA", "MIN_LIGHTNESS", "delta_e", "distinct_colours", "srgb_to_lab"]

#: Overlay colours are at least this saturated (CIELAB C*) and this light (L*), so
#: they read as colour over a grey CT/MR slice, not as another shade of grey.
MIN_CHROMA = 20.0
MIN_LIGHTNESS = 40.0
_LADDER = (25.0, 22.0, 20.0, 17.0, 14.0, 11.0, 8.0)
_GRID_STEP = 15  # sRGB levels 0, 15, ... 255: 18^3 candidates


def srgb_to_lab(rgb) -> np.ndarray:
    """CIELAB (D65) of 8-bit sRGB colours, shape (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = c @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def delta_e(a, b) -> np.ndarray:
    """CIE76 colour difference between 8-bit sRGB colours (broadcasting)."""
    return np.linalg.norm(srgb_to_lab(a) - srgb_to_lab(b), axis=-1)


def _usable(lab: np.ndarray) -> np.ndarray:
    return (np.hypot(lab[..., 1], lab[..., 2]) >= MIN_CHROMA) & (lab[..., 0] >= MIN_LIGHTNESS)


def _candidates() -> tuple[np.ndarray, np.ndarray]:
    levels = np.arange(0, 256, _GRID_STEP)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = srgb_to_lab(rgb)
    keep = _usable(lab)
    return rgb[keep], lab[keep]


def _assign(own_lab: np.ndarray, cand_lab: np.ndarray, threshold: float) -> list[int] | None:
    """Index per colour: -1 keeps its own colour, k takes candidate k; None when a
    colour cannot be placed ``threshold`` from all before it."""
    chosen: list[np.ndarray] = []
    out: list[int] = []
    nearest_chosen = np.full(len(cand_lab), np.inf)  # candidate -> closest chosen colour
    for own in own_lab:
        far = all(np.linalg.norm(own - c) >= threshold for c in chosen)
        if far and _usable(own):
            out.append(-1)
            colour = own
        else:
            free = nearest_chosen >= threshold
            if not free.any():
                return None
            distance = np.where(free, np.linalg.norm(cand_lab - own, axis=1), np.inf)
            k = int(np.argmin(distance))
            out.append(k)
            colour = cand_lab[k]
        chosen.append(colour)
        nearest_chosen = np.minimum(nearest_chosen, np.linalg.norm(cand_lab - colour, axis=1))
    return out


def distinct_colours(colours: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    """Colours for labels given in priority order (largest first), pairwise at least
    the largest ladder distance all of them can meet; unchanged where already so."""
    own = [tuple(int(v) for v in c) for c in colours]
    if not own:
        return []
    own_lab = srgb_to_lab(own)
    cand_rgb, cand_lab = _candidates()
    for threshold in _LADDER:
        picks = _assign(own_lab, cand_lab, threshold)
        if picks is not None:
            break
    else:  # more labels than the grid can separate by the last rung: keep spacing best-effort
        picks = _assign(own_lab, cand_lab, 0.0)
        assert picks is not None
    return [own[i] if k < 0 else tuple(int(v) for v in cand_rgb[k]) for i, k in enumerate(picks)]
