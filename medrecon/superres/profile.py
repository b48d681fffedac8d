"""The slice profile of a thick stack, and which voxel axis is the thick one.

Conventions (docs/reconstruct.md): ``thickness`` is the profile's full width at
half maximum in mm (for a box, its width); ``spacing`` is the centre-to-centre
distance of the slices in mm. ``spacing > thickness`` leaves gaps between the
slices, ``spacing < thickness`` makes them overlap.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from medrecon.errors import InputError
from medrecon.volume import Volume

__all__ = [
    "KINDS",
    "ReconstructError",
    "SliceProfile",
    "profile_from_volume",
    "thick_axis",
]

log = logging.getLogger(__name__)

KINDS = ("box", "gaussian")
#: A stack counts as anisotropic when its coarsest axis is this much coarser
#: than its finest; below it there is nothing worth reconstructing.
MIN_FACTOR = 1.2
#: Relative tolerance under which thickness and spacing count as equal.
_REL_TOL = 1e-3


class ReconstructError(InputError):
    """A stack that cannot be reconstructed, with the reason in words."""


@dataclass(frozen=True)
class SliceProfile:
    """How one thick slice samples the object along the through-plane axis."""

    kind: str
    thickness: float
    spacing: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"profile kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("thickness", "spacing"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"profile {name} must be a positive number of mm, got {value}")

    @property
    def gap(self) -> float:
        """Empty space between neighbouring slices in mm (0 when contiguous or overlapping)."""
        return max(self.spacing - self.thickness, 0.0)

    @property
    def overlap(self) -> float:
        """Shared width of neighbouring slices in mm (0 when contiguous or gapped)."""
        return max(self.thickness - self.spacing, 0.0)

    @property
    def relation(self) -> str:
        """``"contiguous"``, ``"gapped"`` or ``"overlapping"``."""
        if abs(self.spacing - self.thickness) <= _REL_TOL * self.spacing:
            return "contiguous"
        return "gapped" if self.spacing > self.thickness else "overlapping"

    @property
    def sigma(self) -> float:
        """Standard deviation (mm) of the Gaussian whose FWHM is ``thickness``."""
        return self.thickness / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    def factor(self, fine_spacing: float) -> float:
        """How many fine voxels of ``fine_spacing`` mm one slice step spans."""
        return self.spacing / fine_spacing

    def density(self, x: np.ndarray) -> np.ndarray:
        """The profile as a density (integral 1) at offsets ``x`` mm from the slice centre."""
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "box":
            return np.where(np.abs(x) <= self.thickness / 2, 1.0 / self.thickness, 0.0)
        s = self.sigma
        return np.exp(-0.5 * (x / s) ** 2) / (s * math.sqrt(2 * math.pi))

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Integral of :meth:`density` from -inf to ``x``; cell weights are its differences."""
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "box":
            return np.clip(x / self.thickness + 0.5, 0.0, 1.0)
        from scipy.special import ndtr

        return ndtr(x / self.sigma)

    @property
    def support(self) -> float:
        """Half-width (mm) beyond which the profile's weight is negligible."""
        return self.thickness / 2 if self.kind == "box" else 5.0 * self.sigma

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary (the sidecar's ``slice_profile``)."""
        return {
            "kind": self.kind,
            "thickness_mm": self.thickness,
            "spacing_mm": self.spacing,
            "gap_mm": self.gap,
            "overlap_mm": self.overlap,
            "relation": self.relation,
        }


def thick_axis(affine: np.ndarray, *, min_factor: float = MIN_FACTOR) -> int:
    """The voxel axis (0, 1 or 2) with the largest spacing (the affine's column norm).

    Raises :class:`ReconstructError` ("nothing to reconstruct") when the stack is
    isotropic within ``min_factor``, and when two axes are equally coarse (no one
    through-plane direction).
    """
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    order = np.argsort(spacing)
    coarse, middle, fine = spacing[order[2]], spacing[order[1]], spacing[order[0]]
    sp = "x".join(f"{s:.3g}" for s in spacing)
    if coarse < min_factor * fine:
        raise ReconstructError(
            f"stack spacing {sp} mm is isotropic (within {min_factor}x): nothing to reconstruct"
        )
    if coarse < min_factor * middle:
        raise ReconstructError(
            f"stack spacing {sp} mm has two coarse axes; reconstruction needs one thick "
            "(through-plane) axis and two fine in-plane axes"
        )
    return int(order[2])


def profile_from_volume(
    volume: Volume,
    *,
    kind: str = "box",
    thickness: float | None = None,
    axis: int | None = None,
) -> tuple[SliceProfile, int, list[str]]:
    """The profile, thick axis and warnings for a stack.

    Spacing is the affine's column norm along the thick axis (the loader derives
    it from the slice positions, so gaps and overlaps show as spacing != thickness).
    Thickness comes from ``thickness`` when given, else the header's SliceThickness
    (``meta.extra["slice_thickness"]``); when neither exists it is assumed equal to
    the spacing, with a warning.
    """
    if volume.array.ndim != 3:
        raise ReconstructError(
            f"stack of shape {volume.shape} is 4D ({volume.meta.frame_axis or 'frames'}); "
            "reconstruct takes one 3D stack at a time"
        )
    axis = thick_axis(volume.affine) if axis is None else int(axis)
    spacing = float(volume.spacing[axis])
    warnings: list[str] = []
    if thickness is None:
        header = volume.meta.extra.get("slice_thickness")
        thickness = float(header) if header else None
    if thickness is None or not (math.isfinite(thickness) and thickness > 0):
        thickness = spacing
        warnings.append(
            f"no slice thickness in the header: assumed equal to the slice spacing ({spacing:g} mm)"
        )
    profile = SliceProfile(kind, float(thickness), spacing)
    if profile.relation == "gapped":
        warnings.append(
            f"slices of {profile.thickness:g} mm every {spacing:g} mm leave "
            f"{profile.gap:g} mm gaps: the gaps were never measured and are inferred"
        )
    elif profile.relation == "overlapping":
        warnings.append(
            f"slices of {profile.thickness:g} mm every {spacing:g} mm overlap by "
            f"{profile.overlap:g} mm"
        )
    for w in warnings:
        log.warning("%s", w)
    return profile, axis, warnings
