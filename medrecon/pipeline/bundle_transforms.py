"""Map a MONAI bundle's ``preprocessing`` and ``inferer`` onto medrecon's specs.

:func:`preprocessing` turns the bundle's transform chain into a
:class:`PreprocessSpec` and :func:`inferer` its ``SlidingWindowInferer`` into an
:class:`InferenceSpec`; :mod:`medrecon.pipeline.bundle` reads the bundle and
calls them. A transform without a faithful medrecon equivalent is refused with
a :class:`PipelineError`, never dropped: the network would see differently
scaled data. Values reach these functions already resolved (references and
``$`` expressions evaluated) by the caller's ``resolve``; nothing here runs
bundle code.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from medrecon.errors import PipelineError
from medrecon.pipeline.config import (
    CT_WINDOW,
    PERCENTILE,
    ZSCORE,
    InferenceSpec,
    IntensitySpec,
    PreprocessSpec,
)

__all__ = ["Mapped", "Resolve", "dig", "inferer", "preprocessing"]

log = logging.getLogger(__name__)

# Inferer settings medrecon maps; device placement and padding are its own business.
_INFERER_KEYS = {"roi_size", "sw_batch_size", "overlap", "mode", "sigma_scale"}
# Steps that only load, reshape or retype the image: no effect on its values.
_PLUMBING = {
    "LoadImage", "EnsureChannelFirst", "AddChannel", "AsChannelFirst", "EnsureType",
    "CastToType", "ToTensor", "ToNumpy", "ToDevice", "ToMetaTensor", "Identity",
    "CopyItems", "DeleteItems", "SelectItems",
}  # fmt: skip
_SUPPORTED = (
    "Orientationd, Spacingd, ScaleIntensityRanged, NormalizeIntensityd, "
    "ScaleIntensityRangePercentilesd, CropForegroundd"
)

#: What a per-transform mapper returns: the step's kind and the PreprocessSpec fields it sets.
Mapped = tuple[str, dict[str, Any]]


class Resolve(Protocol):
    """Resolves one config id (references and expressions) to plain values."""

    #: The inference config the ids belong to (used in error messages).
    source: Path

    def __call__(self, id_: str) -> Any: ...


def _base(target: Any) -> str:
    """``monai.transforms.Spacingd`` / ``SpacingD`` / ``SpacingDict`` -> ``Spacing``."""
    name = str(target).rsplit(".", 1)[-1]
    for suffix in ("Dict", "d", "D"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _disabled(step: dict[str, Any]) -> bool:
    flag = step.get("_disabled_", False)
    return flag.strip().lower() in ("true", "1", "yes") if isinstance(flag, str) else bool(flag)


def preprocessing(resolve: Resolve, config: dict[str, Any]) -> PreprocessSpec:
    """The bundle's ``preprocessing`` Compose as a :class:`PreprocessSpec`.

    Loading/typing steps and ``_disabled_`` ones are skipped; any other step must
    have a mapper, and at most one step of each kind (intensity, spacing, ...) is
    allowed. ``crop_foreground`` is False unless a ``CropForegroundd`` is present.
    """
    where = f"{resolve.source} `preprocessing`"
    if "preprocessing" not in config:
        raise PipelineError(f"{resolve.source}: no `preprocessing` section to map")
    section = resolve("preprocessing")
    steps = section.get("transforms") if isinstance(section, dict) else section
    if not isinstance(steps, list):
        raise PipelineError(f"{where}: expected a Compose with a `transforms` list")
    fields: dict[str, Any] = {"crop_foreground": False}
    seen: set[str] = set()
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or "_target_" not in step:
            raise PipelineError(f"{where}: step {index} is not a `_target_` component")
        target = str(step["_target_"])
        if _disabled(step) or _base(target) in _PLUMBING:
            log.debug("%s: step %d `%s` skipped (disabled or plumbing)", where, index, target)
            continue
        mapper = _MAPPERS.get(_base(target))
        if mapper is None:
            raise PipelineError(
                f"{where}: step {index} `{target}` cannot be mapped onto medrecon's "
                f"preprocessing (supported: {_SUPPORTED}; loading/typing steps are ignored). "
                "Running without it would change what the network sees."
            )
        args = {k: v for k, v in step.items() if not (k.startswith("_") and k.endswith("_"))}
        kind, values = mapper(args, f"{where} step {index} `{target}`")
        if kind in seen:
            # Two intensity steps (say) compose; medrecon's single step cannot express that.
            raise PipelineError(f"{where}: step {index} `{target}` is a second {kind} step")
        seen.add(kind)
        fields.update(values)
    return PreprocessSpec(**fields)


def _number(value: Any, where: str, key: str) -> float:
    # numbers.Real also admits numpy scalars, which `$` expressions may produce.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PipelineError(f"{where}: `{key}` must be a number, got {value!r}")
    return float(value)


def _unit_range(args: dict[str, Any], where: str) -> None:
    b_min, b_max = args.get("b_min"), args.get("b_max")
    if (b_min, b_max) == (0, 1):
        return
    # Without both bounds MONAI skips the output rescale (that is [0, 1] too), but its
    # clip then acts on one side only, or fails: medrecon has no equivalent.
    if b_min is None and b_max is None and not args.get("clip", False):
        return
    if b_min is None or b_max is None:
        raise PipelineError(
            f"{where}: b_min={b_min}, b_max={b_max} with clip={args.get('clip', False)} "
            "(a one-sided or undefined clip) is not supported; set b_min: 0 and b_max: 1"
        )
    raise PipelineError(
        f"{where}: output range [b_min, b_max] = [{b_min}, {b_max}] is not supported; "
        "medrecon scales intensities to [0, 1] only"
    )


def _orientation(args: dict[str, Any], where: str) -> Mapped:
    axcodes = args.get("axcodes")
    if not isinstance(axcodes, str) or len(axcodes) != 3 or set(axcodes.upper()) - set("RASLPI"):
        raise PipelineError(f"{where}: `axcodes` must be three letters like 'RAS', got {axcodes!r}")
    return "orientation", {"orientation": axcodes.upper()}


def _spacing(args: dict[str, Any], where: str) -> Mapped:
    pixdim = args.get("pixdim")
    values = [pixdim] * 3 if isinstance(pixdim, (int, float)) else pixdim
    if not isinstance(values, list) or len(values) != 3:
        raise PipelineError(f"{where}: `pixdim` must be three spacings in mm, got {pixdim!r}")
    spacing = tuple(_number(v, where, "pixdim") for v in values)
    if min(spacing) <= 0:
        # MONAI keeps the native spacing on such axes; medrecon resamples all or none.
        raise PipelineError(f"{where}: `pixdim` {pixdim!r} has non-positive entries")
    return "spacing", {"spacing": spacing}


def _window(args: dict[str, Any], where: str) -> Mapped:
    _unit_range(args, where)
    low, high = (
        _number(args.get("a_min"), where, "a_min"),
        _number(args.get("a_max"), where, "a_max"),
    )
    if low >= high:
        raise PipelineError(f"{where}: a_min {low} must be below a_max {high}")
    # MONAI's default is clip=False, unlike medrecon's IntensitySpec.
    intensity = IntensitySpec(CT_WINDOW, window=(low, high), clip=bool(args.get("clip", False)))
    return "intensity", {"intensity": intensity}


def _zscore(args: dict[str, Any], where: str) -> Mapped:
    if args.get("subtrahend") is not None or args.get("divisor") is not None:
        raise PipelineError(f"{where}: fixed `subtrahend`/`divisor` are not supported")
    return "intensity", {"intensity": IntensitySpec(ZSCORE, nonzero=bool(args.get("nonzero")))}


def _percentile(args: dict[str, Any], where: str) -> Mapped:
    _unit_range(args, where)
    if args.get("relative"):
        raise PipelineError(f"{where}: `relative=True` is not supported")
    lower, upper = (
        _number(args.get("lower"), where, "lower"),
        _number(args.get("upper"), where, "upper"),
    )
    if not 0 <= lower < upper <= 100:
        raise PipelineError(f"{where}: need 0 <= lower < upper <= 100, got {lower}, {upper}")
    clip = bool(args.get("clip", False))
    intensity = IntensitySpec(PERCENTILE, lower=lower, upper=upper, clip=clip)
    return "intensity", {"intensity": intensity}


def _crop(args: dict[str, Any], where: str) -> Mapped:
    if args.get("select_fn") is not None:
        raise PipelineError(f"{where}: a custom `select_fn` is not supported")
    margin = args.get("margin", 0)  # MONAI's default
    margins = set(margin) if isinstance(margin, list) else {margin}
    if len(margins) != 1 or not all(isinstance(m, int) and m >= 0 for m in margins):
        raise PipelineError(f"{where}: `margin` must be one whole number of voxels, got {margin!r}")
    return "crop", {"crop_foreground": True, "crop_margin": margins.pop()}


_MAPPERS: dict[str, Callable[[dict[str, Any], str], Mapped]] = {
    "Orientation": _orientation,
    "Spacing": _spacing,
    "ScaleIntensityRange": _window,
    "NormalizeIntensity": _zscore,
    "ScaleIntensityRangePercentiles": _percentile,
    "CropForeground": _crop,
}


def dig(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None as soon as a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _triple(value: Any, where: str, key: str) -> tuple[int, int, int]:
    values = [value] * 3 if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(values, list)
        or len(values) != 3
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)
        or min(values) <= 0
    ):
        raise PipelineError(f"{where}: `{key}` must be three positive whole numbers, got {value!r}")
    return (int(values[0]), int(values[1]), int(values[2]))


def _scalar(value: Any, where: str, key: str) -> float:
    # MONAI accepts one value per axis; medrecon uses one for all axes.
    values = set(value) if isinstance(value, list) else {value}
    if len(values) != 1:
        raise PipelineError(f"{where}: per-axis `{key}` {value!r} is not supported")
    return _number(values.pop(), where, key)


def inferer(resolve: Resolve, config: dict[str, Any], metadata: dict[str, Any]) -> InferenceSpec:
    """The bundle's ``SlidingWindowInferer`` as an :class:`InferenceSpec`.

    Unset values take MONAI's defaults. Without an ``inferer`` section the patch
    size comes from metadata ``network_data_format.inputs.image.spatial_shape``.
    """
    where = f"{resolve.source} `inferer`"
    if "inferer" not in config:
        shape = dig(metadata, "network_data_format", "inputs", "image", "spatial_shape")
        try:
            roi = _triple(shape, where, "spatial_shape")
        except PipelineError:
            raise PipelineError(
                f"{resolve.source}: no `inferer` section, and metadata.json "
                "`network_data_format.inputs.image.spatial_shape` is not a usable patch size "
                f"({shape!r}); add a SlidingWindowInferer with `roi_size`"
            ) from None
        return InferenceSpec(roi_size=roi)
    section = resolve("inferer")
    target = str(section.get("_target_", "")) if isinstance(section, dict) else ""
    if target.rsplit(".", 1)[-1] not in ("SlidingWindowInferer", "SlidingWindowInfererAdapt"):
        raise PipelineError(
            f"{where}: `{target or repr(section)}` is not supported; "
            "medrecon runs SlidingWindowInferer"
        )
    mode = getattr(section.get("mode", "constant"), "value", section.get("mode", "constant"))
    if mode not in ("gaussian", "constant"):
        raise PipelineError(f"{where}: blend `mode` {mode!r} is not 'gaussian' or 'constant'")
    batch = section.get("sw_batch_size", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise PipelineError(f"{where}: `sw_batch_size` must be a positive whole number")
    overlap = _scalar(section.get("overlap", 0.25), where, "overlap")
    if not 0 <= overlap < 1:
        raise PipelineError(f"{where}: `overlap` {overlap} must be in [0, 1)")
    ignored = sorted(k for k in section if k not in _INFERER_KEYS and not k.startswith("_"))
    if ignored:
        log.info("%s: medrecon does not apply %s", where, ", ".join(ignored))
    # Unset values take MONAI's SlidingWindowInferer defaults, not medrecon's.
    return InferenceSpec(
        roi_size=_triple(section.get("roi_size"), where, "roi_size"),
        overlap=overlap,
        sw_batch_size=batch,
        blend=mode,
        sigma_scale=_scalar(section.get("sigma_scale", 0.125), where, "sigma_scale"),
    )
