"""What medrecon reads from an nnU-Net v2 ``plans.json`` and ``dataset.json``.

Only the facts prediction needs are kept, as frozen dataclasses, so a bad or
unsupported folder fails when it is loaded, not half-way through a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrecon.errors import PipelineError

__all__ = [
    "Architecture",
    "Configuration",
    "LabelScheme",
    "ResampleRule",
    "read_json",
    "read_configuration",
    "read_label_scheme",
]

#: nnU-Net's default threshold (max/min spacing) above which an axis is resampled apart.
ANISO_THRESHOLD = 3.0
#: Resampling functions medrecon reproduces (nnU-Net's default for every planner it ships).
SUPPORTED_RESAMPLING = ("resample_data_or_seg_to_shape",)
NORMALIZATIONS = (
    "CTNormalization",
    "ZScoreNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
)
READERS = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient")


@dataclass(frozen=True)
class ResampleRule:
    """One of the plans' resampling entries: spline order in-plane and along a
    separately treated (anisotropic) axis."""

    order: int
    order_z: int = 0
    #: None: decide from the spacings; True/False: forced by the plans.
    force_separate_z: bool | None = None
    anisotropy_threshold: float = ANISO_THRESHOLD


@dataclass(frozen=True)
class Architecture:
    """The plans' ``architecture`` entry."""

    class_name: str
    kwargs: dict[str, Any]
    requires_import: tuple[str, ...]


@dataclass(frozen=True)
class LabelScheme:
    """dataset.json's labels: plain labels (argmax) or regions (sigmoid > 0.5)."""

    #: value -> name for every label written to the map (background excluded).
    names: dict[int, str]
    #: Region per output head (None for plain labels).
    regions: tuple[tuple[int, ...], ...] | None = None
    #: Label value written for each region head, later heads winning.
    regions_class_order: tuple[int, ...] | None = None

    @property
    def num_heads(self) -> int:
        if self.regions is not None:
            return len(self.regions)
        return len(self.names) + 1


@dataclass(frozen=True)
class Configuration:
    """A resolved plans configuration (inheritance applied)."""

    name: str
    spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    normalization: str
    use_mask_for_norm: bool
    intensity: dict[str, float]
    data_resampling: ResampleRule
    probability_resampling: ResampleRule
    architecture: Architecture
    transpose_forward: tuple[int, int, int]
    transpose_backward: tuple[int, int, int]
    reader: str

    @property
    def is_2d(self) -> bool:
        return len(self.patch_size) == 2


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise PipelineError(
            f"{path} not found: an nnU-Net results folder holds dataset.json and plans.json"
        ) from None
    except (OSError, ValueError) as exc:
        raise PipelineError(
            f"cannot read {path} as JSON ({exc}); re-export the model folder"
        ) from exc


def _resolve(configurations: dict, name: str, source: Path, seen: tuple[str, ...] = ()) -> dict:
    if name not in configurations:
        raise PipelineError(
            f"{source}: configuration {name!r} not in the plans; "
            f"it has {', '.join(sorted(configurations))}"
        )
    if name in seen:
        raise PipelineError(f"{source}: configurations inherit in a circle: {' -> '.join(seen)}")
    entry = dict(configurations[name])
    parent = entry.pop("inherits_from", None)
    if parent is None:
        return entry
    merged = _resolve(configurations, parent, source, (*seen, name))
    merged.update(entry)
    return merged


def _rule(config: dict, key: str, source: Path) -> ResampleRule:
    fn = config.get(f"resampling_fn_{key}")
    if fn not in SUPPORTED_RESAMPLING:
        raise PipelineError(
            f"{source}: resampling_fn_{key} is {fn!r}; medrecon reproduces only "
            f"{', '.join(SUPPORTED_RESAMPLING)}. Run this model with nnU-Net itself."
        )
    kwargs = dict(config.get(f"resampling_fn_{key}_kwargs") or {})
    force = kwargs.get("force_separate_z", False)
    return ResampleRule(
        order=int(kwargs.get("order", 3)),
        order_z=int(kwargs.get("order_z", 0)),
        force_separate_z=None if force is None else bool(force),
        anisotropy_threshold=float(kwargs.get("separate_z_anisotropy_threshold", ANISO_THRESHOLD)),
    )


def read_configuration(plans: dict, name: str, source: Path) -> Configuration:
    """Configuration ``name`` of ``plans`` (read from ``source``), checked."""
    config = _resolve(plans.get("configurations") or {}, name, source)
    if config.get("previous_stage"):
        raise PipelineError(
            f"{source}: configuration {name!r} is a cascade stage that needs the "
            f"{config['previous_stage']!r} prediction as input; medrecon does not run "
            "cascades. Choose 3d_fullres or another single-stage configuration."
        )
    arch = config.get("architecture")
    if not isinstance(arch, dict) or "network_class_name" not in arch:
        raise PipelineError(
            f"{source}: configuration {name!r} has no 'architecture' entry (plans written "
            "by nnU-Net before v2.4?); re-plan the dataset with a current nnU-Net v2"
        )
    schemes = list(config.get("normalization_schemes") or [])
    if len(schemes) != 1 or schemes[0] not in NORMALIZATIONS:
        raise PipelineError(
            f"{source}: normalization {schemes!r} is not one medrecon reproduces "
            f"({', '.join(NORMALIZATIONS)})"
        )
    reader = plans.get("image_reader_writer", "SimpleITKIO")
    if reader not in READERS:
        raise PipelineError(
            f"{source}: image_reader_writer {reader!r}; medrecon reads images the way "
            f"{', '.join(READERS)} do, not others"
        )
    intensity = (plans.get("foreground_intensity_properties_per_channel") or {}).get("0", {})
    if schemes[0] == "CTNormalization" and not intensity:
        raise PipelineError(
            f"{source}: CTNormalization needs foreground_intensity_properties_per_channel['0']"
        )
    return Configuration(
        name=name,
        spacing=tuple(float(s) for s in config["spacing"]),
        patch_size=tuple(int(p) for p in config["patch_size"]),
        normalization=schemes[0],
        use_mask_for_norm=bool((config.get("use_mask_for_norm") or [False])[0]),
        intensity={k: float(v) for k, v in intensity.items()},
        data_resampling=_rule(config, "data", source),
        probability_resampling=_rule(config, "probabilities", source),
        architecture=Architecture(
            class_name=str(arch["network_class_name"]),
            kwargs=dict(arch.get("arch_kwargs") or {}),
            requires_import=tuple(arch.get("_kw_requires_import") or ()),
        ),
        transpose_forward=tuple(int(t) for t in plans.get("transpose_forward", (0, 1, 2))),
        transpose_backward=tuple(int(t) for t in plans.get("transpose_backward", (0, 1, 2))),
        reader=reader,
    )


def read_label_scheme(dataset: dict, source: Path) -> LabelScheme:
    """dataset.json's labels as nnU-Net's LabelManager reads them."""
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or labels.get("background") not in (0, [0], (0,)):
        raise PipelineError(f"{source}: 'labels' must map names to values with background = 0")
    entries = {k: v for k, v in labels.items() if k not in ("background", "ignore")}
    has_regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in entries.values())
    if not has_regions:
        names: dict[int, str] = {}
        for name, value in entries.items():
            value = int(value[0] if isinstance(value, (list, tuple)) else value)
            names[value] = name
        if sorted(names) != list(range(1, len(names) + 1)):
            raise PipelineError(
                f"{source}: label values {sorted(names)} must run 1..N without gaps "
                "(nnU-Net requires it)"
            )
        return LabelScheme(names=names)
    order = dataset.get("regions_class_order")
    regions = tuple(
        tuple(int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
        for v in entries.values()
    )
    if not order or len(order) != len(regions):
        raise PipelineError(
            f"{source}: region-based labels need 'regions_class_order' with one entry per "
            f"region ({len(regions)})"
        )
    names = {int(value): name for name, value in zip(entries, order)}
    return LabelScheme(
        names=names, regions=regions, regions_class_order=tuple(int(x) for x in order)
    )
