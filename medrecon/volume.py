"""Volume: the one image type everything in medrecon passes around.

A Volume is a voxel array plus a 4x4 affine that maps voxel indices (i, j, k)
to RAS millimetres, as nibabel does, plus metadata about where it came from.
Axis order is (i, j, k[, t]); a fourth axis holds time points, echoes or other
repeated acquisitions at the same positions (``meta.frame_axis`` names it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medrecon import interop
from medrecon.space import LPS_TO_RAS

if TYPE_CHECKING:  # pragma: no cover - typing only
    import nibabel as nib
    import SimpleITK as sitk
    from monai.data import MetaTensor

__all__ = ["Volume", "VolumeMeta"]


@dataclass
class VolumeMeta:
    """Where a volume came from and what happened to it on the way in."""

    modality: str | None = None
    series_uid: str | None = None
    series_number: int | None = None
    description: str = ""
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None
    source_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: What sets this volume apart from others of the same series
    #: (e.g. ``{"echo_number": 2}`` or ``{"image_type": "FIELD_MAP"}``).
    distinguishing: dict[str, Any] = field(default_factory=dict)
    #: Name of the fourth axis for 4D volumes ("time", "echo", ...).
    frame_axis: str | None = None
    #: Gantry tilt in degrees that was corrected by resampling (0 if none).
    gantry_tilt_deg: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: DICOM input: the source files' headers as a DICOM SEG references them
    #: (:class:`medrecon.io.dicom.sources.SourceHeaders`, shared by copies); else None.
    source_headers: Any = field(default=None, repr=False)

    def copy(self) -> VolumeMeta:
        return copy.deepcopy(self)


class Volume:
    """A voxel array with a voxel->RAS (mm) affine and metadata.

    Parameters
    ----------
    array:
        3D ``(i, j, k)`` or 4D ``(i, j, k, t)`` array.
    affine:
        4x4 voxel-index -> RAS millimetre transform.
    meta:
        Provenance and warnings; a fresh empty one when omitted.
    """

    __slots__ = ("affine", "array", "meta")

    def __init__(
        self,
        array: np.ndarray,
        affine: np.ndarray,
        meta: VolumeMeta | None = None,
    ) -> None:
        array = np.asanyarray(array)
        affine = np.asarray(affine, dtype=np.float64)
        if array.ndim not in (3, 4):
            raise ValueError(f"Volume array must be 3D or 4D, got shape {array.shape}")
        if affine.shape != (4, 4):
            raise ValueError(f"Volume affine must be 4x4, got shape {affine.shape}")
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError(f"Volume affine is not an invertible finite transform:\n{affine}")
        self.array = array
        self.affine = affine
        self.meta = meta if meta is not None else VolumeMeta()

    # -- geometry -----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape[:3])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL (``|det|`` of the affine's 3x3 part / 1000)."""
        return abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit RAS directions of i, j, k."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def lps_affine(self) -> np.ndarray:
        """Voxel -> LPS (DICOM/ITK patient) millimetre transform."""
        return LPS_TO_RAS @ self.affine

    def voxel_to_ras(self, ijk: np.ndarray) -> np.ndarray:
        """Map an ``(N, 3)`` array of voxel indices to RAS mm."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def ras_to_voxel(self, ras: np.ndarray) -> np.ndarray:
        """Map an ``(N, 3)`` array of RAS mm positions to (fractional) voxel indices."""
        ras = np.atleast_2d(np.asarray(ras, dtype=np.float64))
        inv = np.linalg.inv(self.affine)
        return ras @ inv[:3, :3].T + inv[:3, 3]

    def orientation_codes(self) -> tuple[str, str, str]:
        """Nearest axis codes, e.g. ``('R', 'A', 'S')`` (nibabel's convention)."""
        import nibabel as nib

        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    def with_array(self, array: np.ndarray, meta: VolumeMeta | None = None) -> Volume:
        """A new Volume on the same grid holding ``array``."""
        return Volume(array, self.affine.copy(), meta if meta is not None else self.meta.copy())

    # -- interoperability (medrecon.interop converts the plain parts) ----------------------
    def to_nibabel(self) -> nib.Nifti1Image:
        """A NIfTI-1 image with sform = qform = this affine (code 1, scanner)."""
        return interop.nibabel_image(
            self.array,
            self.affine,
            frame_axis=self.meta.frame_axis,
            frame_interval_s=self.meta.extra.get("frame_interval_s"),
        )

    @classmethod
    def from_nibabel(cls, image: Any, meta: VolumeMeta | None = None) -> Volume:
        """A Volume from a nibabel spatial image (nibabel's best affine; see
        :func:`medrecon.interop.nibabel_parts` for the scaling rules)."""
        return cls._from_parts(interop.nibabel_parts(image), meta)

    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image (LPS origin/direction); SimpleITK is imported lazily."""
        return interop.sitk_image(
            self.array, self.affine, frame_interval_s=self.meta.extra.get("frame_interval_s")
        )

    @classmethod
    def from_sitk(cls, image: Any, meta: VolumeMeta | None = None) -> Volume:
        """A Volume from a 3D or 4D SimpleITK image; a 3D vector image gives a 4D volume."""
        return cls._from_parts(interop.sitk_parts(image), meta)

    def to_metatensor(self) -> MetaTensor:
        """A MONAI MetaTensor (channel-first) whose ``affine`` is this RAS affine."""
        source = self.meta.source_files[0] if self.meta.source_files else None
        return interop.metatensor_image(self.array, self.affine, source_file=source)

    @classmethod
    def from_metatensor(cls, tensor: Any, meta: VolumeMeta | None = None) -> Volume:
        """A Volume from a channel-first MetaTensor (C, X, Y, Z); C == 1 gives 3D."""
        return cls._from_parts(interop.metatensor_parts(tensor), meta)

    @classmethod
    def _from_parts(cls, parts: interop.ImageParts, meta: VolumeMeta | None) -> Volume:
        meta = meta.copy() if meta is not None else VolumeMeta()
        meta.warnings.extend(parts.warnings)
        if parts.frame_interval_s is not None:
            meta.extra.setdefault("frame_interval_s", parts.frame_interval_s)
        if parts.frame_axis == interop.COLOUR:
            meta.frame_axis = parts.frame_axis  # the array's last axis holds colour samples
        elif parts.frame_axis is not None:
            meta.frame_axis = meta.frame_axis or parts.frame_axis  # the given name wins
        return cls(parts.array, parts.affine, meta)

    def __repr__(self) -> str:
        codes = "".join(self.orientation_codes())
        sp = "x".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing={sp} mm, "
            f"orientation={codes}, modality={self.meta.modality!r}, "
            f"description={self.meta.description!r})"
        )
