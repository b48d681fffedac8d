"""Model input from a Volume: MONAI dictionary transforms for orientation,
spacing, intensity and foreground crop.

The transformed MetaTensor keeps its affine (voxel -> RAS mm) up to date
through every transform, so predictions go back to the native grid by
resampling between two known affines (:mod:`medrecon.pipeline.native`), which
is what ``Invertd`` does for this chain, without holding every class
probability at full native resolution at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medrecon.errors import InputError
from medrecon.pipeline.config import CT_WINDOW, PERCENTILE, PreprocessSpec
from medrecon.volume import Volume

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["ModelInput", "build_transforms", "prepare_input"]

logger = logging.getLogger(__name__)

KEY = "image"


@dataclass
class ModelInput:
    """The network's input (1, 1, X, Y, Z) float32 and its grid's voxel -> RAS affine."""

    tensor: torch.Tensor
    affine: np.ndarray

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.tensor.shape[2:])  # type: ignore[return-value]


def _above_minimum(x: Any) -> Any:
    # After intensity scaling the background (air, clipped values) sits at the minimum.
    # A constant image has no foreground: keep all of it rather than crop to nothing.
    mask = x > x.min()
    return mask | ~mask.any()


def build_transforms(spec: PreprocessSpec) -> Any:
    """The MONAI ``Compose`` that turns ``{"image": MetaTensor}`` into model input."""
    from monai import transforms as mt

    chain: list[Any] = [mt.Orientationd(keys=KEY, axcodes=spec.orientation, labels=None)]
    if spec.spacing is not None:
        # float32 arithmetic: MONAI's default (float64) doubles the cost for no gain here.
        chain.append(mt.Spacingd(keys=KEY, pixdim=spec.spacing, mode="bilinear", dtype=np.float32))
    inten = spec.intensity
    if inten.mode == CT_WINDOW:
        lo, hi = inten.window  # type: ignore[misc]
        chain.append(
            mt.ScaleIntensityRanged(
                keys=KEY, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=inten.clip
            )
        )
    elif inten.mode == PERCENTILE:
        chain.append(
            mt.ScaleIntensityRangePercentilesd(
                keys=KEY,
                lower=inten.lower,
                upper=inten.upper,
                b_min=0.0,
                b_max=1.0,
                clip=inten.clip,
            )
        )
    else:
        chain.append(mt.NormalizeIntensityd(keys=KEY, nonzero=inten.nonzero))
    if spec.crop_foreground:
        chain.append(
            mt.CropForegroundd(
                keys=KEY,
                source_key=KEY,
                select_fn=_above_minimum,
                margin=spec.crop_margin,
                allow_smaller=True,
            )
        )
    chain.append(mt.EnsureTyped(keys=KEY, dtype=np.float32, track_meta=True))
    return mt.Compose(chain)


def prepare_input(
    volume: Volume, spec: PreprocessSpec, *, spacing=None, device: str = "cpu"
) -> ModelInput:
    """Run the preprocessing chain on a 3D volume; ``spacing`` overrides the spec's.

    With a GPU ``device`` the voxels travel there in their stored type (int16 for
    most CT, half the bytes of float32) and every transform runs on the GPU.
    """
    import torch

    if volume.array.ndim != 3:
        raise InputError(
            f"segmentation needs a 3D volume, got shape {volume.shape} ({volume.meta.frame_axis} "
            "axis): choose one frame first, e.g. Volume(vol.array[..., 0], vol.affine)"
        )
    if spacing is not None:
        spec = replace(spec, spacing=tuple(float(s) for s in spacing))
    array = volume.array
    if array.dtype.kind not in "iuf" or array.dtype.itemsize > 4 or array.dtype == np.uint32:
        array = array.astype(np.float32)  # torch lacks uint32/uint64; float64 is wasted here
    image = volume.with_array(array).to_metatensor()
    if device != "cpu":
        image = image.to(device)
    image = image.float()
    out = build_transforms(spec)({KEY: image})[KEY]
    affine = np.asarray(out.affine.detach().cpu().numpy(), dtype=np.float64)
    tensor = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
    return ModelInput(tensor=tensor.contiguous().unsqueeze(0), affine=affine)
