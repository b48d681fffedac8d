"""Pipeline configuration: the typed form of a ``pipelines/<name>.yaml`` file.

Everything a pipeline file can say is a field of one of these frozen
dataclasses; its labels are the core :class:`~medrecon.labels.Label`. Parsing and
validation live in :mod:`medrecon.pipeline.parse`, so a bad file fails when it is
loaded, never half-way through a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrecon.labels import Label

__all__ = [
    "CT_WINDOW",
    "FLAG_PARAMS",
    "INTENSITY_MODES",
    "NETWORKS",
    "OUTPUTS",
    "PERCENTILE",
    "REFINE_STEPS",
    "ZSCORE",
    "CoarseSpec",
    "left_right_axis",
    "left_right_pairs",
    "InferenceSpec",
    "IntensitySpec",
    "NetworkSpec",
    "Pipeline",
    "PreprocessSpec",
    "RefineStep",
    "WeightsSpec",
]

CT_WINDOW = "ct_window"
PERCENTILE = "percentile"
ZSCORE = "zscore"
INTENSITY_MODES = (CT_WINDOW, PERCENTILE, ZSCORE)

#: MONAI networks a pipeline file may name (``monai.networks.nets.<name>``).
NETWORKS = ("DynUNet", "UNet", "SegResNet")

#: Refinement steps and the parameters each one takes (name -> required?).
REFINE_STEPS: dict[str, dict[str, bool]] = {
    # keep_cut_pieces: also keep every component that touches a face of the volume the
    # largest one touches (an organ cut by the scan's end can fall into pieces there).
    "keep_largest_component": {"keep_cut_pieces": False},
    "remove_small_islands": {"min_volume_mm3": True},
    "fill_holes": {},
    "smooth": {"radius_mm": True},
    # Components of ``labels`` centred above the lowest point of ``reference`` go
    # (keep_above: below its highest point); a smaller reference is no landmark.
    "keep_below": {"min_reference_mm3": False},
    "keep_above": {"min_reference_mm3": False},
    # Components of ``labels`` centred farther than this left or right of the body's
    # midline go (the image's foreground gives the midline).
    "keep_near_midline": {"max_offset_mm": True},
    # Components of ``labels`` centred above the lung bases go (CT only: the lungs are
    # the largest air region inside the body, from this volume up; pipeline/lungs.py).
    "keep_below_lungs": {"min_lung_mm3": True},
    # Components of ``labels`` centred above the head's lowest slice go (CT only: a
    # skull ring around brain, over at least this many mm; pipeline/skull.py).
    "keep_below_skull": {"min_head_mm": True},
    # Voxels of ``labels`` (all when omitted) in the air around the body, farther than
    # the margin from it, go (CT only: pipeline/body.py).
    "keep_inside_body": {"margin_mm": True},
    # Components of ``labels`` (all when omitted) whose median reads as air go (CT only).
    "remove_air_components": {},
}

#: Refine steps that judge a component by where it lies in the patient
#: (refine_anatomy.py); the first two measure from ``reference`` labels.
#: Refine parameters that are yes/no in a pipeline file (stored as 1.0 / 0.0).
FLAG_PARAMS = frozenset({"keep_cut_pieces"})

ANATOMY_STEPS = (
    "keep_below",
    "keep_above",
    "keep_near_midline",
    "keep_below_lungs",
    "keep_below_skull",
)
#: Anatomy steps that read the image (on the labels' grid), not only the labels.
IMAGE_STEPS = (
    "keep_near_midline",
    "keep_below_lungs",
    "keep_below_skull",
    "keep_inside_body",
    "remove_air_components",
)
REFERENCE_STEPS = ANATOMY_STEPS[:2]

#: Output files ``medrecon run`` can write (the pipeline lists its defaults).
OUTPUTS = ("image", "labels", "seg_nrrd", "meshes", "scene", "dicom_seg", "stats", "preview")


@dataclass(frozen=True)
class IntensitySpec:
    """How voxel values become network input.

    ``ct_window``: clip to ``window`` (HU) and scale to [0, 1].
    ``percentile``: map the ``lower``/``upper`` percentiles to [0, 1] (clipped if ``clip``).
    ``zscore``: subtract the mean and divide by the standard deviation
    (over voxels > 0 when ``nonzero``).
    """

    mode: str
    window: tuple[float, float] | None = None
    lower: float = 0.5
    upper: float = 99.5
    clip: bool = True
    nonzero: bool = False


@dataclass(frozen=True)
class PreprocessSpec:
    """Resampling and normalisation before the network sees the volume."""

    orientation: str = "RAS"
    #: Target voxel size in mm; None keeps the native spacing.
    spacing: tuple[float, float, float] | None = None
    intensity: IntensitySpec = field(default_factory=lambda: IntensitySpec(mode=ZSCORE))
    #: Crop to the body (voxels above the bottom of the intensity range) before inference.
    crop_foreground: bool = True
    #: Margin in voxels (model grid) kept around the foreground box.
    crop_margin: int = 4


@dataclass(frozen=True)
class NetworkSpec:
    """A MONAI network by name and its constructor arguments.

    ``factory`` builds the module instead when set (MONAI bundles use it); it
    is never read from a pipeline file.
    """

    name: str
    args: dict[str, Any]
    factory: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def out_channels(self) -> int | None:
        value = self.args.get("out_channels")
        return int(value) if value is not None else None


@dataclass(frozen=True)
class WeightsSpec:
    """A weights file (resolved path) and its expected SHA-256 (lower-case hex)."""

    path: Path
    sha256: str | None


@dataclass(frozen=True)
class InferenceSpec:
    """Sliding-window settings."""

    roi_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.25
    sw_batch_size: int = 2
    #: "gaussian" or "constant" blending of overlapping windows.
    blend: str = "gaussian"
    sigma_scale: float = 0.125
    #: Test-time augmentation: each entry is a tuple of spatial axes (0, 1, 2) to flip.
    tta_flips: tuple[tuple[int, ...], ...] = ()
    #: Not read from a file: set by medrecon's engine, whose training swaps left and
    #: right labels on a left-right flip. A TTA pass flipped along ``left_right_axis``
    #: swaps these channel pairs back (a left kidney seen mirrored is called "right").
    left_right_axis: int | None = None
    left_right_pairs: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class CoarseSpec:
    """Coarse-to-fine: a first pass at ``spacing`` locates the labels; the fine
    pass then runs on their box plus ``margin_mm`` only.

    ``network``/``weights`` name a separate coarse model; without them the main
    model runs at the coarse spacing.
    """

    spacing: tuple[float, float, float]
    margin_mm: float = 20.0
    network: NetworkSpec | None = None
    weights: WeightsSpec | None = None


@dataclass(frozen=True)
class RefineStep:
    """One post-processing step, applied to ``labels`` (values; None = all labels)."""

    kind: str
    labels: tuple[int, ...] | None = None
    params: dict[str, float] = field(default_factory=dict)
    #: ``keep_below`` / ``keep_above`` only: the labels the step's labels must lie
    #: below / above.
    reference: tuple[int, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    """A complete, validated segmentation pipeline."""

    name: str
    modality: str
    labels: tuple[Label, ...]
    preprocess: PreprocessSpec
    network: NetworkSpec
    weights: WeightsSpec | None
    inference: InferenceSpec = field(default_factory=InferenceSpec)
    coarse: CoarseSpec | None = None
    refine: tuple[RefineStep, ...] = ()
    outputs: tuple[str, ...] = OUTPUTS
    description: str = ""
    version: str = "1"
    #: BodyPartExamined defined terms the pipeline is made for (empty: not checked).
    body_parts: tuple[str, ...] = ()
    #: The file this pipeline was read from (None when built in code).
    source: Path | None = None
    #: Who runs it: ``native`` (medrecon's own steps), ``nnunet``, ``bundle`` or
    #: ``totalsegmentator`` (:mod:`medrecon.models.engines`).
    engine: str = "native"
    #: The foreign model's own description (its folder, plans, folds...), read by
    #: its engine; None for native pipelines.
    foreign: Any = None

    def label_by_name(self, name: str) -> Label:
        for label in self.labels:
            if label.name == name:
                return label
        raise KeyError(name)

    @property
    def label_names(self) -> dict[int, str]:
        return {label.value: label.name for label in self.labels}

    @property
    def max_label(self) -> int:
        return max(label.value for label in self.labels)

    @property
    def label_dtype(self) -> type:
        """The smallest unsigned type that holds every label value (uint8 or uint16)."""
        import numpy as np

        return np.uint8 if self.max_label < 256 else np.uint16


def left_right_pairs(pipeline: Pipeline) -> list[tuple[int, int]]:
    """(value, value) of every ``X_left``/``X_right`` label pair in the pipeline."""
    by_name = {lab.name: lab.value for lab in pipeline.labels}
    return [
        (value, by_name[name[: -len("_left")] + "_right"])
        for name, value in by_name.items()
        if name.endswith("_left") and name[: -len("_left")] + "_right" in by_name
    ]


def left_right_axis(orientation: str) -> int:
    """The model grid's left-right axis for an orientation code such as ``RAS``."""
    for axis, code in enumerate(orientation.upper()):
        if code in "LR":
            return axis
    raise ValueError(f"orientation {orientation!r} has no left-right axis")
