"""Read and validate pipeline YAML files into :class:`~medrecon.pipeline.config.Pipeline`.

Strict on purpose: an unknown key, a value of the wrong kind, a label without
a name, a network argument the network does not take, a missing weights file
or a checksum mismatch is a :class:`PipelineError` naming the file and the key.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medrecon.errors import PipelineError
from medrecon.labels import Label
from medrecon.pipeline.config import (
    ANATOMY_STEPS,
    CT_WINDOW,
    FLAG_PARAMS,
    INTENSITY_MODES,
    NETWORKS,
    OUTPUTS,
    PERCENTILE,
    REFERENCE_STEPS,
    REFINE_STEPS,
    CoarseSpec,
    InferenceSpec,
    IntensitySpec,
    NetworkSpec,
    Pipeline,
    PreprocessSpec,
    RefineStep,
    WeightsSpec,
)
from medrecon.pipeline.parse_labels import parse_body_parts, parse_labels
from medrecon.pipeline.section import Section
from medrecon.pipeline.weights import verify_weights

__all__ = ["parse_pipeline", "read_pipeline_file"]

logger = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_AXCODES = re.compile(r"^(?=.*[LR])(?=.*[AP])(?=.*[SI])[LRAPSI]{3}$")


def read_pipeline_file(path: str | Path, *, check_weights: bool = True) -> Pipeline:
    """Load a pipeline YAML file; relative weights paths are resolved beside it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"pipeline file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from exc
    return parse_pipeline(data, base_dir=path.parent, source=path, check_weights=check_weights)


def parse_pipeline(
    data: Any,
    *,
    base_dir: Path | None = None,
    source: Path | None = None,
    check_weights: bool = True,
) -> Pipeline:
    """Validate a pipeline mapping (as read from YAML) and build the dataclasses.

    ``check_weights`` verifies that the weights file exists and matches its
    SHA-256; listing pipelines turns it off to report status instead.
    """
    origin = str(source) if source is not None else "pipeline"
    base_dir = base_dir or Path.cwd()
    top = Section(data, "", origin)
    name = top.string("name", required=True)
    labels = parse_labels(top.get("labels", required=True), origin)
    network = _parse_network(top.section("network", required=True))
    max_label = max(label.value for label in labels)
    if network.out_channels is not None and network.out_channels != max_label + 1:
        raise PipelineError(
            f"{origin}: 'network.args.out_channels' is {network.out_channels} but the largest "
            f"label value is {max_label}; channel i predicts label value i, so out_channels "
            f"must be {max_label + 1}"
        )
    weights = _parse_weights(top.section("weights"), base_dir, check_weights)
    coarse_sec = top.section("coarse")
    pipeline = Pipeline(
        name=name,
        description=top.string("description", ""),
        version=top.string("version", "1"),
        modality=top.string("modality", required=True).upper(),
        labels=labels,
        preprocess=_parse_preprocess(top.section("preprocess", required=True)),
        network=network,
        weights=weights,
        inference=_parse_inference(top.section("inference")),
        coarse=_parse_coarse(coarse_sec, base_dir, check_weights) if coarse_sec else None,
        refine=_parse_refine(top.get("refine", []), labels, origin),
        outputs=_parse_outputs(top, origin),
        body_parts=parse_body_parts(top),
        source=source,
    )
    top.finish()
    return pipeline


def _parse_intensity(sec: Section) -> IntensitySpec:
    mode = sec.string("mode", required=True)
    if mode not in INTENSITY_MODES:
        raise sec.error("mode", f"must be one of {', '.join(INTENSITY_MODES)}, got {mode!r}")
    window = None
    if mode == CT_WINDOW:
        window = sec.get("window", required=True)
        if not (
            isinstance(window, list | tuple)
            and len(window) == 2
            and all(isinstance(v, int | float) for v in window)
            and window[0] < window[1]
        ):
            raise sec.error("window", f"must be [low, high] with low < high, got {window!r}")
        window = (float(window[0]), float(window[1]))
    spec = IntensitySpec(
        mode=mode,
        window=window,
        lower=sec.number("lower", 0.5, lo=0, hi=100) if mode == PERCENTILE else 0.5,
        upper=sec.number("upper", 99.5, lo=0, hi=100) if mode == PERCENTILE else 99.5,
        clip=sec.boolean("clip", True),
        nonzero=sec.boolean("nonzero", False),
    )
    if spec.lower >= spec.upper:
        raise sec.error("lower", "must be below 'upper'")
    sec.finish()
    return spec


def _parse_preprocess(sec: Section) -> PreprocessSpec:
    orientation = sec.string("orientation", "RAS").upper()
    if not _AXCODES.match(orientation):
        raise sec.error(
            "orientation", f"must be three axis codes like RAS or LPS, not {orientation!r}"
        )
    spec = PreprocessSpec(
        orientation=orientation,
        spacing=sec.triple("spacing"),
        intensity=_parse_intensity(sec.section("intensity", required=True)),
        crop_foreground=sec.boolean("crop_foreground", True),
        crop_margin=sec.integer("crop_margin", 4),
    )
    sec.finish()
    return spec


def _parse_network(sec: Section) -> NetworkSpec:
    name = sec.string("name", required=True)
    if name not in NETWORKS:
        raise sec.error("name", f"must be one of {', '.join(NETWORKS)}, got {name!r}")
    args = sec.get("args", {})
    if not isinstance(args, Mapping):
        raise sec.error("args", "must be a mapping of constructor arguments")
    sec.finish()
    from monai.networks import nets

    params = inspect.signature(getattr(nets, name)).parameters
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise sec.error("args", f"{name} takes no argument(s) {unknown}; it takes {sorted(params)}")
    missing = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty
        and p.name not in args
        and p.name not in ("self", "spatial_dims")
    ]
    if missing:
        raise sec.error("args", f"{name} needs argument(s) {missing}")
    return NetworkSpec(name=name, args=dict(args))


def _parse_weights(sec: Section | None, base_dir: Path, check: bool) -> WeightsSpec | None:
    if sec is None:
        return None
    path = Path(sec.string("path", required=True))
    path = path if path.is_absolute() else (base_dir / path)
    sha = sec.string("sha256")
    sec.finish()
    if sha is not None:
        sha = sha.lower()
        if not _HEX64.match(sha):
            raise sec.error("sha256", f"must be 64 hex digits, got {sha!r}")
    spec = WeightsSpec(path=path.resolve(), sha256=sha)
    if check:
        verify_weights(spec, sec.origin)
    return spec


def _parse_inference(sec: Section | None) -> InferenceSpec:
    if sec is None:
        return InferenceSpec()
    blend = sec.string("blend", "gaussian")
    if blend not in ("gaussian", "constant"):
        raise sec.error("blend", f"must be 'gaussian' or 'constant', got {blend!r}")
    flips = sec.get("tta_flips", [])
    ok = isinstance(flips, list) and all(
        isinstance(f, list) and f and all(a in (0, 1, 2) for a in f) for f in flips
    )
    if not ok:
        raise sec.error(
            "tta_flips", f"must be a list of axis lists like [[0], [1, 2]], got {flips!r}"
        )
    spec = InferenceSpec(
        roi_size=sec.triple("roi_size", (96, 96, 96), kind=int),
        overlap=sec.number("overlap", 0.25, lo=0.0, hi=0.95),
        sw_batch_size=sec.integer("sw_batch_size", 2, lo=1),
        blend=blend,
        sigma_scale=sec.number("sigma_scale", 0.125, lo=0.01, hi=10),
        tta_flips=tuple(tuple(sorted(set(f))) for f in flips),
    )
    sec.finish()
    return spec


def _parse_coarse(sec: Section, base_dir: Path, check: bool) -> CoarseSpec:
    net_sec = sec.section("network")
    spec = CoarseSpec(
        spacing=sec.triple("spacing", required=True),
        margin_mm=sec.number("margin_mm", 20.0, lo=0.0),
        network=_parse_network(net_sec) if net_sec else None,
        weights=_parse_weights(sec.section("weights"), base_dir, check),
    )
    if (spec.network is None) != (spec.weights is None):
        raise sec.error("network", "a separate coarse model needs both 'network' and 'weights'")
    sec.finish()
    return spec


def _parse_refine(raw: Any, labels: tuple[Label, ...], origin: str) -> tuple[RefineStep, ...]:
    if not isinstance(raw, list):
        raise PipelineError(f"{origin}: 'refine' must be a list of steps")
    by_name = {label.name: label.value for label in labels}
    steps = []
    for i, entry in enumerate(raw):
        sec = Section(entry, f"refine[{i}]", origin)
        kind = sec.string("step", required=True)
        if kind not in REFINE_STEPS:
            raise sec.error("step", f"unknown step {kind!r}; known: {', '.join(REFINE_STEPS)}")
        params = {
            p: float(sec.boolean(p, False))
            if p in FLAG_PARAMS
            else sec.number(p, None if required else 0.0, lo=0.0)
            for p, required in REFINE_STEPS[kind].items()
        }
        chosen = sec.get("labels")
        values = None if chosen is None else _label_values(sec, "labels", chosen, by_name)
        reference: tuple[int, ...] = ()
        if kind in ANATOMY_STEPS and values is None:
            raise sec.error("labels", f"{kind} needs the labels it judges")
        if kind in REFERENCE_STEPS:
            reference = _label_values(sec, "reference", sec.get("reference"), by_name)
        sec.finish()
        steps.append(RefineStep(kind=kind, labels=values, params=params, reference=reference))
    return tuple(steps)


def _label_values(sec: Section, key: str, chosen: Any, by_name: dict[str, int]) -> tuple:
    if not isinstance(chosen, list) or not chosen:
        raise sec.error(key, "must be a list of label names or values")
    values = []
    for item in chosen:
        if isinstance(item, str) and item in by_name:
            values.append(by_name[item])
        elif isinstance(item, int) and item in by_name.values():
            values.append(item)
        else:
            raise sec.error(key, f"{item!r} is not a label of this pipeline")
    return tuple(values)


def _parse_outputs(top: Section, origin: str) -> tuple[str, ...]:
    outputs = top.get("outputs", list(OUTPUTS))
    if not isinstance(outputs, list) or any(o not in OUTPUTS for o in outputs):
        raise PipelineError(f"{origin}: 'outputs' must be a list drawn from {', '.join(OUTPUTS)}")
    return tuple(outputs)
