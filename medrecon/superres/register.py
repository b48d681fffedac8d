"""Several stacks of one session: checks that they belong together, and rigid registration.

Every stack is registered onto the first one (the fixed stack) in world space with
SimpleITK: an Euler (rigid) transform started at identity, because stacks of one
session already share scanner space and a centring initializer would move them
apart; Mattes mutual information, so different MR contrasts register; a pyramid
that smooths in mm, since a thick stack's voxels are far from cubic. A stack that
does not register is reported (``ok=False`` and a reason in words), never raised
on, so the caller can leave it out.

Convention: :class:`Registration.matrix` is a 4x4 RAS matrix that maps a point of the
moving stack's world to the fixed stack's world, so ``matrix @ moving.affine`` is the
moving stack's affine after registration (:func:`apply_rigid`). ITK's transform maps
fixed LPS points to moving LPS points; the conversion is
``matrix = LPS_TO_RAS @ inv(T_itk) @ LPS_TO_RAS``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medrecon.space import LPS_TO_RAS
from medrecon.superres.profile import ReconstructError
from medrecon.volume import Volume

__all__ = [
    "MIN_OVERLAP",
    "WEAK_OVERLAP",
    "Registration",
    "apply_rigid",
    "check_stacks",
    "euler_angles_deg",
    "overlap_fraction",
    "register_rigid",
]

log = logging.getLogger(__name__)

#: Under this overlap with the first stack a stack is refused (check_stacks) or
#: its registration fails: there is too little shared anatomy to fuse or register.
MIN_OVERLAP = 0.2
#: Under this overlap check_stacks warns.
WEAK_OVERLAP = 0.5
#: Under this mutual information (nats) at the end the two stacks share no structure:
#: aligned CT stacks along two axes give about 0.8, unrelated noise about 0.002.
MIN_INFORMATION = 0.05
#: The final metric may be this fraction of the start's worse before it counts as lost.
METRIC_TOLERANCE = 0.02


@dataclass
class Registration:
    """The rigid transform of one moving stack onto the fixed stack, and how it went."""

    matrix: np.ndarray
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    metric_before: float
    metric_after: float
    iterations: int
    ok: bool
    reason: str | None = None
    #: How far the moving stack's centre moves (mm); the shift limit applies to it.
    centre_shift_mm: float = 0.0
    #: Overlap with the fixed stack after moving (see overlap_fraction).
    overlap: float = 1.0

    @property
    def rotation_angle_deg(self) -> float:
        """The total rotation angle (degrees); the rotation limit applies to it."""
        r = self.matrix[:3, :3]
        return math.degrees(math.acos(float(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary (the sidecar's ``registration`` for one stack)."""
        return {
            "method": "SimpleITK Euler3D, Mattes mutual information, from identity",
            "ok": bool(self.ok),
            "reason": self.reason,
            "matrix_ras": [[float(x) for x in row] for row in self.matrix],
            "rotation_deg_ras_xyz": [float(a) for a in self.rotation_deg],
            "rotation_angle_deg": self.rotation_angle_deg,
            "translation_mm_ras": [float(t) for t in self.translation_mm],
            "centre_shift_mm": float(self.centre_shift_mm),
            "metric": "mattes_mutual_information (negative: lower is better)",
            "metric_before": float(self.metric_before),
            "metric_after": float(self.metric_after),
            "iterations": int(self.iterations),
            "overlap": float(self.overlap),
        }


def euler_angles_deg(rotation: np.ndarray) -> tuple[float, float, float]:
    """Angles (a, b, c) in degrees about the RAS x, y, z axes with ``R = Rz(c) Ry(b) Rx(a)``."""
    r = np.asarray(rotation, dtype=np.float64)
    b = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    a = math.atan2(r[2, 1], r[2, 2])
    c = math.atan2(r[1, 0], r[0, 0])
    return (math.degrees(a), math.degrees(b), math.degrees(c))


def apply_rigid(volume: Volume, registration: Registration) -> Volume:
    """``volume`` with its affine replaced by ``matrix @ affine``; the voxels are untouched."""
    return Volume(volume.array, registration.matrix @ volume.affine, volume.meta.copy())


def _box_points(volume: Volume, n: int = 9) -> np.ndarray:
    """An ``n^3`` lattice spanning the box of voxel centres, in RAS."""
    extent = np.asarray(volume.spatial_shape, dtype=np.float64) - 1
    axes = [np.linspace(0.0, e, n) for e in extent]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return volume.voxel_to_ras(ijk)


def _box_volume(volume: Volume) -> float:
    extent = np.maximum(np.asarray(volume.spatial_shape, dtype=np.float64) - 1, 1.0)
    return abs(float(np.linalg.det(volume.affine[:3, :3]))) * float(np.prod(extent))


def overlap_fraction(a: Volume, b: Volume) -> float:
    """The fraction of the smaller stack's field of view lying inside the other's.

    A field of view is the box of voxel centres in world space; the fraction is
    counted on a 9x9x9 lattice spanning the smaller box (by volume).
    """
    small, large = (a, b) if _box_volume(a) <= _box_volume(b) else (b, a)
    ijk = large.ras_to_voxel(_box_points(small))
    top = np.asarray(large.spatial_shape, dtype=np.float64) - 1
    inside = np.all((ijk >= -1e-6) & (ijk <= top + 1e-6), axis=1)
    return float(inside.mean())


def check_stacks(stacks: Sequence[Volume]) -> list[str]:
    """Refuse stacks that cannot be fused with the first; return warnings for weak ones.

    Raises :class:`ReconstructError` naming the stack indices (0 is the first) when a
    stack is 4D, when two stacks' modalities are both known and differ, or when a
    stack overlaps the first by less than :data:`MIN_OVERLAP`.
    """
    if not stacks:
        raise ReconstructError("no stacks given: reconstruct needs at least one stack")
    four_d = [i for i, s in enumerate(stacks) if s.array.ndim != 3]
    if four_d:
        raise ReconstructError(
            f"stack(s) {four_d} are not 3D (shape {stacks[four_d[0]].shape}): "
            "pass one 3D volume per stack (split a 4D series into its frames first)"
        )
    known = {i: s.meta.modality.upper() for i, s in enumerate(stacks) if s.meta.modality}
    if len(set(known.values())) > 1:
        listed = ", ".join(f"stack {i} is {m}" for i, m in known.items())
        raise ReconstructError(
            f"stacks of different modalities cannot be fused ({listed}): "
            "pass stacks of one modality, e.g. reconstruct each modality separately"
        )
    warnings: list[str] = []
    for i, stack in enumerate(stacks[1:], start=1):
        f = overlap_fraction(stacks[0], stack)
        if f < MIN_OVERLAP:
            raise ReconstructError(
                f"stack {i} overlaps the first stack (stack 0) in only {100 * f:.0f}% of the "
                "smaller field of view: they do not cover the same region; pass stacks of the "
                "same region from one session, or reconstruct them separately"
            )
        if f < WEAK_OVERLAP:
            warnings.append(
                f"stack {i} overlaps the first stack in only {100 * f:.0f}% of the smaller "
                "field of view: registration and fusion rest on that shared part"
            )
    for w in warnings:
        log.warning("%s", w)
    return warnings


def _itk_matrix(transform) -> np.ndarray:
    """The 4x4 LPS matrix of an ITK matrix-offset transform (fixed -> moving points)."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    m[:3, 3] = np.asarray(transform.GetTranslation(), dtype=np.float64)
    c = np.asarray(transform.GetCenter(), dtype=np.float64)
    m[:3, 3] += c - m[:3, :3] @ c
    return m


def _failed(reason: str, before: float = math.nan, after: float = math.nan, it: int = 0):
    log.warning("registration failed: %s", reason)
    return Registration(
        np.eye(4), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), before, after, it, False, reason
    )


def _image(volume: Volume):
    import SimpleITK as sitk

    return sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)


def _method(seed: int, *, pyramid: bool):
    import SimpleITK as sitk

    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    # A fixed seed makes the random sample, and so the result, reproducible.
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(0.25, seed)
    r.SetInterpolator(sitk.sitkLinear)
    if pyramid:
        # No shrinking: a thick axis shrunk by 2 would leave a handful of slices.
        # Smoothing in mm treats thick and thin axes alike.
        r.SetShrinkFactorsPerLevel([1, 1, 1])
        r.SetSmoothingSigmasPerLevel([6.0, 3.0, 0.0])
        r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return r


def register_rigid(
    moving: Volume,
    fixed: Volume,
    *,
    max_shift_mm: float = 20.0,
    max_rotation_deg: float = 15.0,
    seed: int = 0,
) -> Registration:
    """Rigid registration of ``moving`` onto ``fixed`` in world space (see module doc).

    Ordinary failures give ``ok=False`` with a reason: ITK raising, the metric not
    improving, no shared structure (mutual information under :data:`MIN_INFORMATION`),
    a centre shift above ``max_shift_mm`` or a rotation above ``max_rotation_deg``,
    and an overlap under :data:`MIN_OVERLAP` after moving.
    """
    import SimpleITK as sitk

    for name, v in (("moving", moving), ("fixed", fixed)):
        if v.array.ndim != 3:
            raise ReconstructError(f"the {name} stack has shape {v.shape}: registration is 3D")
    if overlap_fraction(moving, fixed) < MIN_OVERLAP:
        return _failed("the stacks barely overlap before registration; nothing to register on")
    fixed_img, moving_img = _image(fixed), _image(moving)
    # Identity, rotating about the fixed stack's centre so that angles and shifts
    # stay decoupled; the centre only sets the pivot, it moves nothing.
    transform = sitk.Euler3DTransform()
    size = np.asarray(fixed_img.GetSize(), dtype=np.float64)
    transform.SetCenter(fixed_img.TransformContinuousIndexToPhysicalPoint((size - 1) / 2))
    method = _method(seed, pyramid=True)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0,
        minStep=1e-3,
        numberOfIterations=200,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-6,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(transform, inPlace=False)
    probe = _method(seed, pyramid=False)
    try:
        probe.SetInitialTransform(sitk.Euler3DTransform(transform), inPlace=False)
        before = float(probe.MetricEvaluate(fixed_img, moving_img))
        result = method.Execute(fixed_img, moving_img)
        iterations = int(method.GetOptimizerIteration())
        final = sitk.CompositeTransform(result).GetBackTransform()
        final = sitk.Euler3DTransform(final)
        probe.SetInitialTransform(sitk.Euler3DTransform(final), inPlace=False)
        after = float(probe.MetricEvaluate(fixed_img, moving_img))
    except RuntimeError as exc:  # ITK reports every failure as RuntimeError
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return _failed(f"SimpleITK registration raised: {first}")
    lps = _itk_matrix(final)
    matrix = LPS_TO_RAS @ np.linalg.inv(lps) @ LPS_TO_RAS
    centre = moving.voxel_to_ras([(np.asarray(moving.spatial_shape) - 1) / 2])[0]
    shift = float(np.linalg.norm(matrix[:3, :3] @ centre + matrix[:3, 3] - centre))
    reg = Registration(
        matrix=matrix,
        rotation_deg=euler_angles_deg(matrix[:3, :3]),
        translation_mm=tuple(float(t) for t in matrix[:3, 3]),  # type: ignore[arg-type]
        metric_before=before,
        metric_after=after,
        iterations=iterations,
        ok=True,
        centre_shift_mm=shift,
    )
    reg.overlap = overlap_fraction(apply_rigid(moving, reg), fixed)
    reg.reason = _judge(reg, max_shift_mm, max_rotation_deg)
    reg.ok = reg.reason is None
    log.info(
        "registration %s: rotation %.2f deg, shift %.2f mm, metric %.4f -> %.4f, %d iterations",
        "ok" if reg.ok else f"failed ({reg.reason})",
        reg.rotation_angle_deg,
        shift,
        before,
        after,
        iterations,
    )
    return reg


def _judge(reg: Registration, max_shift_mm: float, max_rotation_deg: float) -> str | None:
    """Why the registration is not to be trusted, or None."""
    before, after = reg.metric_before, reg.metric_after
    if not (math.isfinite(before) and math.isfinite(after)):
        return "the similarity metric could not be evaluated (too few shared samples)"
    # Mattes MI is negative. Stacks aligned from the start end up to about 0.5 % worse
    # at full resolution (the pyramid's smoothed optimum); a lost search is far worse.
    if after > before + METRIC_TOLERANCE * abs(before) + 1e-6:
        return f"the metric got worse ({before:.4f} -> {after:.4f})"
    if -after < MIN_INFORMATION:
        return (
            f"the stacks share almost no information (mutual information {-after:.3f} "
            f"< {MIN_INFORMATION}): different anatomy, or one stack is empty or noise"
        )
    if reg.centre_shift_mm > max_shift_mm:
        return f"the shift {reg.centre_shift_mm:.1f} mm is above the {max_shift_mm:g} mm limit"
    if reg.rotation_angle_deg > max_rotation_deg:
        return (
            f"the rotation {reg.rotation_angle_deg:.1f} deg is above the "
            f"{max_rotation_deg:g} deg limit"
        )
    if reg.overlap < MIN_OVERLAP:
        return f"after moving, the stacks overlap in only {100 * reg.overlap:.0f}%"
    return None
