"""Conversions between plain image parts (array, RAS affine) and nibabel, SimpleITK and
MONAI images; ``Volume.to_*`` / ``Volume.from_*`` wrap them.

Every conversion keeps the voxel array (values and dtype) and the geometry
exactly. Affines are voxel -> RAS mm; ITK is LPS, so its origin and direction
are flipped here, at the edge, and nowhere else. This module knows nothing of
Volume or VolumeMeta (they build on it): it takes and returns ``ImageParts``.
SimpleITK, MONAI and torch are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medrecon.errors import FormatError, InputError
from medrecon.space import LPS_TO_RAS

if TYPE_CHECKING:  # pragma: no cover - typing only
    import nibabel as nib
    import SimpleITK as sitk
    from monai.data import MetaTensor

__all__ = [
    "ImageParts",
    "metatensor_image",
    "metatensor_parts",
    "nibabel_image",
    "nibabel_parts",
    "sitk_image",
    "sitk_parts",
]

logger = logging.getLogger(__name__)

_INT16 = np.iinfo(np.int16)
#: NIfTI spatial units -> factor to millimetres.
_SPACE_UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 1e-3}
#: NIfTI time units -> factor to seconds.
_TIME_UNIT_TO_S = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
#: ``ImageParts.frame_axis`` of a colour image: the last axis holds RGB samples.
COLOUR = "rgb"


@dataclass
class ImageParts:
    """A voxel array and its voxel -> RAS affine, read from another library's image,
    with what the image itself says about its fourth axis."""

    array: np.ndarray
    affine: np.ndarray
    #: "rgb" (colour samples: it replaces any given name) or "time" (a default name).
    frame_axis: str | None = None
    frame_interval_s: float | None = None
    warnings: list[str] = field(default_factory=list)


# -- nibabel ------------------------------------------------------------------------------
_RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def nibabel_image(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    frame_axis: str | None = None,
    frame_interval_s: float | None = None,
) -> nib.Nifti1Image:
    """A NIfTI-1 image holding ``array`` as is, sform = qform = ``affine`` (code 1)."""
    import nibabel as nib

    if array.dtype == np.bool_:
        # NIfTI has no boolean type; uint8 is what every viewer expects for masks.
        array = array.astype(np.uint8)
    if frame_axis == COLOUR and array.ndim == 4 and array.shape[3] == 3:
        # Colour: NIfTI RGB24 (one voxel of three uint8 samples), as dcm2niix writes it.
        array = np.ascontiguousarray(array, dtype=np.uint8).view(_RGB24).reshape(array.shape[:3])
    # An explicit dtype keeps int64/uint64 as they are (nibabel refuses to guess them).
    img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    header = img.header
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    if array.ndim == 4 and frame_interval_s is not None:
        header.set_xyzt_units("mm", "sec")
        header["pixdim"][4] = float(frame_interval_s)
    else:
        header.set_xyzt_units("mm")
    return img


def nibabel_parts(img: Any) -> ImageParts:
    """Array and affine of a nibabel spatial image, using nibabel's best affine.

    The stored dtype is kept unless the header sets a non-trivial scl_slope /
    scl_inter; then the scaled values are int16 when the scaling is integral and
    fits, float32 otherwise.
    """
    shape = tuple(img.shape)
    if len(shape) > 4 and all(n == 1 for n in shape[4:]):
        shape = shape[:4]  # trailing singleton axes carry nothing
    if len(shape) not in (3, 4):
        raise FormatError(
            f"Image has {len(shape)} dimensions (shape {tuple(img.shape)}); medrecon reads "
            "3D volumes and 4D series only. Split the image into 3D/4D volumes first."
        )
    array = _nibabel_array(img).reshape(shape)
    parts = ImageParts(array, np.array(img.affine, dtype=np.float64))
    if array.dtype.names == _RGB24.names and len(shape) == 3:
        # RGB24 NIfTI: the samples become a trailing axis, as colour DICOM loads.
        parts.array = np.stack([array[c] for c in _RGB24.names], axis=-1)
        parts.frame_axis = COLOUR

    header = getattr(img, "header", None)
    if header is not None and hasattr(header, "get_xyzt_units"):
        space_unit, time_unit = header.get_xyzt_units()
        factor = _SPACE_UNIT_TO_MM.get(space_unit, 1.0)
        if factor != 1.0:
            # NIfTI units apply to the sform/qform too; Volume affines are in mm.
            parts.affine[:3, :] *= factor
            parts.warnings.append(f"spatial units were {space_unit}; converted to mm")
        if len(shape) == 4 and time_unit in _TIME_UNIT_TO_S:
            interval = float(header.get_zooms()[3]) * _TIME_UNIT_TO_S[time_unit]
            if interval > 0:
                parts.frame_interval_s = interval
                parts.frame_axis = "time"
    return parts


def _nibabel_array(img: Any) -> np.ndarray:
    """The voxel array with the header's scaling applied as described above."""
    dataobj = img.dataobj
    if not hasattr(dataobj, "get_unscaled"):
        # In-memory image: the array already holds the real values.
        return np.asanyarray(dataobj)
    slope = float(getattr(dataobj, "slope", 1.0))
    inter = float(getattr(dataobj, "inter", 0.0))
    raw = np.asanyarray(dataobj.get_unscaled())
    if slope == 1.0 and inter == 0.0:
        return raw
    if np.issubdtype(raw.dtype, np.integer) and slope.is_integer() and inter.is_integer():
        scaled = raw.astype(np.int64) * int(slope) + int(inter)
        if scaled.size == 0 or (scaled.min() >= _INT16.min and scaled.max() <= _INT16.max):
            return scaled.astype(np.int16)
    # float64 data stays float64: narrowing it would lose precision for nothing.
    out_dtype = np.float64 if raw.dtype == np.float64 else np.float32
    return (raw.astype(np.float64) * slope + inter).astype(out_dtype)


# -- SimpleITK ----------------------------------------------------------------------------
def sitk_image(
    array: np.ndarray, affine: np.ndarray, *, frame_interval_s: float | None = None
) -> sitk.Image:
    """A SimpleITK image (LPS origin and direction); a 4D array gives a 4D image."""
    import SimpleITK as sitk

    if array.dtype == np.bool_:
        array = array.astype(np.uint8)  # ITK has no boolean pixel type
    # ITK arrays are (k, j, i) / (t, k, j, i): reverse the axes.
    img = sitk.GetImageFromArray(np.ascontiguousarray(array.T), isVector=False)
    lps = LPS_TO_RAS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if array.ndim == 3:
        img.SetSpacing(spacing.tolist())
        img.SetOrigin(lps[:3, 3].tolist())
        img.SetDirection(direction.ravel().tolist())
    else:
        interval = float(1.0 if frame_interval_s is None else frame_interval_s) or 1.0
        direction4 = np.eye(4)
        direction4[:3, :3] = direction
        img.SetSpacing([*spacing.tolist(), interval])
        img.SetOrigin([*lps[:3, 3].tolist(), 0.0])
        img.SetDirection(direction4.ravel().tolist())
    return img


def sitk_parts(img: sitk.Image) -> ImageParts:
    """Array and RAS affine of a 3D or 4D SimpleITK image; a 3D vector image gives 4D."""
    import SimpleITK as sitk

    dim = img.GetDimension()
    components = img.GetNumberOfComponentsPerPixel()
    if dim not in (3, 4) or (dim == 4 and components > 1):
        raise FormatError(
            f"SimpleITK image is {dim}D with {components} component(s) per pixel; medrecon "
            "reads 3D volumes, 3D vector images and 4D scalar series only."
        )
    array = sitk.GetArrayFromImage(img)
    if components > 1:
        array = np.moveaxis(array, -1, 0)  # (k, j, i, c) -> (c, k, j, i)
    array = array.T  # -> (i, j, k[, t|c])

    spacing = np.asarray(img.GetSpacing(), dtype=np.float64)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)
    origin = np.asarray(img.GetOrigin(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction[:3, :3] * spacing[:3]
    lps[:3, 3] = origin[:3]
    parts = ImageParts(array, LPS_TO_RAS @ lps)
    if dim == 4:
        if np.any(direction[:3, 3] != 0) or np.any(direction[3, :3] != 0):
            parts.warnings.append("4D direction mixes space and time; time coupling ignored")
        parts.frame_interval_s = float(spacing[3])
        parts.frame_axis = "time"
    return parts


# -- MONAI --------------------------------------------------------------------------------
def metatensor_image(
    array: np.ndarray, affine: np.ndarray, *, source_file: str | None = None
) -> MetaTensor:
    """A channel-first MetaTensor: (1, X, Y, Z) for 3D, (T, X, Y, Z) for 4D.

    The tensor shares memory with ``array`` where torch allows it.
    """
    import torch
    from monai.data import MetaTensor
    from monai.utils import MetaKeys, SpaceKeys

    spatial_shape = array.shape[:3]
    if any(s < 0 for s in array.strides):
        array = np.ascontiguousarray(array)  # torch cannot view negative strides
    data = torch.from_numpy(array)
    if array.ndim == 3:
        data, channel_dim = data.unsqueeze(0), "no_channel"
    else:
        data, channel_dim = data.movedim(-1, 0), -1
    affine_t = torch.as_tensor(affine, dtype=torch.float64)
    meta: dict[str, Any] = {
        MetaKeys.SPACE: SpaceKeys.RAS,
        MetaKeys.ORIGINAL_CHANNEL_DIM: channel_dim,
        MetaKeys.ORIGINAL_AFFINE: affine_t.clone(),
        MetaKeys.SPATIAL_SHAPE: np.asarray(spatial_shape),
    }
    if source_file:
        meta["filename_or_obj"] = source_file
    return MetaTensor(data, affine=affine_t, meta=meta)


def metatensor_parts(tensor: Any) -> ImageParts:
    """Array and RAS affine of a channel-first MetaTensor (C, X, Y, Z); C == 1 gives 3D."""
    import torch
    from monai.utils import MetaKeys, SpaceKeys

    affine_t = getattr(tensor, "affine", None)
    if affine_t is None:
        raise InputError("Expected a MONAI MetaTensor with an affine; got a plain tensor.")
    if getattr(tensor, "is_batch", False):
        raise InputError("MetaTensor is a batch; convert one item (tensor[i]) at a time.")
    if tensor.ndim != 4:
        raise InputError(
            f"MetaTensor shape {tuple(tensor.shape)} is not channel-first (C, X, Y, Z)."
        )
    data = tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor
    data = data.detach().cpu()
    if data.dtype == torch.bfloat16:
        data = data.float()  # numpy has no bfloat16
    array = data.numpy()
    array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)

    affine = np.asarray(affine_t.detach().cpu().numpy(), dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"MetaTensor affine has shape {affine.shape}; expected 4x4.")
    space = tensor.meta.get(MetaKeys.SPACE, SpaceKeys.RAS) if hasattr(tensor, "meta") else "RAS"
    if str(space) == str(SpaceKeys.LPS):
        affine = LPS_TO_RAS @ affine
    return ImageParts(array, affine)
