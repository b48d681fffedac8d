"""Read a MONAI bundle folder into a :class:`Pipeline` that the bundle engine runs.

Bundle configs are code: ``_target_`` instantiates any importable class and
``$`` strings are Python expressions. Reading them here uses safe JSON/YAML
loaders only, and :func:`load_bundle` refuses unless the caller passes
``trust=True`` (CLI: ``--trust-bundle``); the configs are evaluated only by
:class:`~medrecon.foreign.bundle.engine.BundleSegmenter`, which the Pipeline
returned here names (``engine="bundle"``).

Labels come from metadata ``network_data_format.outputs.pred.channel_def``
(channel ``i`` -> label value ``i``, channel 0 background) or, for bundles whose
metadata lacks it, from a labels file the user gives (value -> name).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrecon.errors import PipelineError
from medrecon.foreign.bundle.files import (
    bundle_root,
    inference_config,
    read_mapping,
    weights_file,
)
from medrecon.labels import Label
from medrecon.labels.terminology import describe, unknown_names_note
from medrecon.pipeline.config import NetworkSpec, Pipeline, PreprocessSpec

__all__ = ["TRUST_FLAG", "BundleSpec", "is_bundle_folder", "load_bundle"]

log = logging.getLogger(__name__)

TRUST_FLAG = "--trust-bundle"
#: The one input key MONAI's SupervisedEvaluator feeds the network (CommonKeys.IMAGE).
INPUT_KEY = "image"
_BACKGROUND = {"background", "bg", "_background_", "0"}
_CHANNEL_DEF = "network_data_format.outputs.pred.channel_def"


@dataclass(frozen=True)
class BundleSpec:
    """What the bundle engine needs to run a bundle: its files and keys."""

    root: Path
    config: Path
    metadata: Path
    weights: Path
    #: The config id of the network to build (``network_def``, else ``network``).
    network_key: str
    input_key: str = INPUT_KEY
    #: Where the label names came from (channel_def or the labels file), for messages.
    labels_from: str = _CHANNEL_DEF
    #: Said with every segmentation (e.g. label names with no known code).
    notes: tuple[str, ...] = ()


def is_bundle_folder(path: str | Path) -> bool:
    """True when ``path`` looks like a MONAI bundle (metadata.json and an inference config)."""
    try:
        root = bundle_root(Path(path).expanduser())
        inference_config(root)
    except PipelineError:
        return False
    return (root / "configs" / "metadata.json").is_file()


def load_bundle(
    path: str | Path, *, trust: bool = False, labels: str | Path | None = None
) -> Pipeline:
    """The MONAI bundle at ``path`` (its folder or its inference config) as a Pipeline.

    ``labels`` is a JSON/YAML file mapping label value -> name, for bundles whose
    metadata has no ``channel_def``. Nothing in the bundle is evaluated here;
    raises :class:`PipelineError` for anything missing, malformed, untrusted or
    not runnable (several input images, no network).
    """
    root = bundle_root(Path(path).expanduser())
    config_path = inference_config(root)
    meta_path = root / "configs" / "metadata.json"
    if not meta_path.is_file():
        raise PipelineError(f"{meta_path}: missing; a MONAI bundle needs configs/metadata.json")
    weights = weights_file(root)
    config, metadata = read_mapping(config_path), read_mapping(meta_path)
    if not trust:
        raise PipelineError(
            f"{config_path}: MONAI bundle configs can run arbitrary Python (`_target_` "
            "instantiation and `$` expressions), so medrecon does not load them by default. "
            f"If you trust where '{root.name}' came from, pass {TRUST_FLAG} "
            "(load_bundle(..., trust=True) in Python)."
        )
    network_key = _network_key(config, config_path)
    _single_input(config, metadata, network_key, config_path, meta_path)
    if labels is not None:
        label_table, labels_from = _labels_file(Path(labels).expanduser()), str(labels)
    else:
        label_table, labels_from = _channel_def(metadata, meta_path), _CHANNEL_DEF
    _check_out_channels(config, network_key, label_table, config_path, labels_from)
    name = str(metadata.get("name") or root.name)
    notes = unknown_names_note(label_table, f"MONAI bundle {name}")
    target = str(config[network_key].get("_target_", "?"))
    spec = BundleSpec(
        root=root,
        config=config_path,
        metadata=meta_path,
        weights=weights,
        network_key=network_key,
        labels_from=labels_from,
        notes=notes,
    )
    pipeline = Pipeline(
        name=name,
        modality=_modality(metadata, config),
        labels=label_table,
        # medrecon's own preprocessing and network specs are unused: the bundle runs its own.
        preprocess=PreprocessSpec(),
        network=NetworkSpec(name=f"bundle:{target}", args={}),
        weights=None,
        description=str(metadata.get("description") or ""),
        version=str(metadata.get("version") or "1"),
        source=config_path,
        engine="bundle",
        foreign=spec,
    )
    log.info("loaded MONAI bundle %s (%d labels) from %s", name, len(label_table), root)
    return pipeline


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _network_key(config: dict[str, Any], source: Path) -> str:
    for key in ("network_def", "network"):
        if isinstance(config.get(key), dict) and "_target_" in config[key]:
            return key
    raise PipelineError(f"{source}: no `network_def` component to build the network from")


def _literal_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _single_input(
    config: dict[str, Any],
    metadata: dict[str, Any],
    network_key: str,
    source: Path,
    meta_path: Path,
) -> None:
    """Refuse bundles that need several input images, naming what they need."""
    inputs = _dig(metadata, "network_data_format", "inputs") or {}
    if isinstance(inputs, dict) and len(inputs) > 1:
        raise PipelineError(
            f"{meta_path}: the bundle needs several inputs ({', '.join(map(str, inputs))}); "
            "medrecon feeds a bundle one image"
        )
    image = inputs.get(INPUT_KEY) if isinstance(inputs, dict) else None
    channels = _literal_int(_dig(image, "num_channels"))
    if channels is None:
        channels = _literal_int(_dig(config, network_key, "in_channels"))
    if channels is not None and channels > 1:
        names = _dig(image, "channel_def")
        named = ", ".join(f"{k}: {v}" for k, v in names.items()) if isinstance(names, dict) else "?"
        raise PipelineError(
            f"{meta_path}: the network takes {channels} input images as channels ({named}); "
            "medrecon feeds a bundle one image, so multi-image bundles are not supported"
        )


def _channel_def(metadata: dict[str, Any], meta_path: Path) -> tuple[Label, ...]:
    outputs = _dig(metadata, "network_data_format", "outputs") or {}
    output = outputs.get("pred") if isinstance(outputs, dict) and "pred" in outputs else None
    if output is None and isinstance(outputs, dict) and len(outputs) == 1:
        output = next(iter(outputs.values()))
    channel_def = _dig(output, "channel_def")
    if not isinstance(channel_def, dict) or not channel_def:
        raise PipelineError(
            f"{meta_path}: `{_CHANNEL_DEF}` is missing, so medrecon cannot name the labels; "
            "pass a labels file (value -> name, JSON or YAML) with --labels"
        )
    try:
        names = {int(k): str(v).strip() for k, v in channel_def.items()}
    except ValueError:
        raise PipelineError(f"{meta_path}: `{_CHANNEL_DEF}` keys must be channel numbers") from None
    if sorted(names) != list(range(len(names))):
        raise PipelineError(
            f"{meta_path}: `{_CHANNEL_DEF}` must number channels 0..N-1, got {sorted(names)}"
        )
    if names[0].lower() not in _BACKGROUND:
        raise PipelineError(
            f"{meta_path}: `{_CHANNEL_DEF}` channel 0 is {names[0]!r}; medrecon needs channel 0 "
            "to be background (label value 0); pass a labels file with --labels otherwise"
        )
    return _table({i: names[i] for i in range(1, len(names))}, f"{meta_path}: `{_CHANNEL_DEF}`")


def _labels_file(path: Path) -> tuple[Label, ...]:
    if not path.is_file():
        raise PipelineError(f"{path}: labels file not found")
    data = read_mapping(path)
    try:
        names = {int(k): str(v).strip() for k, v in data.items()}
    except (TypeError, ValueError):
        raise PipelineError(
            f"{path}: keys must be label values (whole numbers), e.g. {{1: liver, 2: spleen}}"
        ) from None
    if any(v < 0 for v in names):
        raise PipelineError(f"{path}: label values must not be negative")
    # Value 0 is background in a label map, whatever the file calls it.
    names.pop(0, None)
    return _table(names, str(path))


def _table(names: dict[int, str], where: str) -> tuple[Label, ...]:
    if not names:
        raise PipelineError(f"{where}: no label besides background")
    seen = list(names.values())
    if len(set(seen)) != len(seen):
        raise PipelineError(f"{where}: a label name is repeated: {seen}")
    try:
        return tuple(describe(names[v], v, generic=True) for v in sorted(names))
    except ValueError as exc:
        raise PipelineError(f"{where}: {exc}") from exc


def _check_out_channels(
    config: dict[str, Any],
    network_key: str,
    labels: tuple[Label, ...],
    source: Path,
    labels_from: str,
) -> None:
    declared = _literal_int(_dig(config, network_key, "out_channels"))
    expected = max(label.value for label in labels) + 1
    if declared is not None and declared != expected and labels_from == _CHANNEL_DEF:
        raise PipelineError(
            f"{source}: `{network_key}.out_channels` is {declared} but metadata.json's "
            f"channel_def names {expected} channels"
        )


def _modality(metadata: dict[str, Any], config: dict[str, Any]) -> str:
    declared = _dig(metadata, "network_data_format", "inputs", INPUT_KEY, "modality")
    if isinstance(declared, str) and declared.strip().upper() in ("CT", "MR", "MRI", "PT", "US"):
        modality = declared.strip().upper()
        return "MR" if modality == "MRI" else modality
    # Undeclared ("none" in the zoo's template): a literal intensity window reaching
    # below 0 only makes sense in Hounsfield units; otherwise assume MR-like intensities.
    steps = _dig(config, "preprocessing", "transforms")
    for step in steps if isinstance(steps, list) else []:
        target = str(_dig(step, "_target_") or "")
        low = _dig(step, "a_min")
        if target.endswith("ScaleIntensityRanged") and isinstance(low, (int, float)) and low < 0:
            return "CT"
    log.info("bundle metadata declares no modality (%r); assuming MR-like intensities", declared)
    return "MR"
