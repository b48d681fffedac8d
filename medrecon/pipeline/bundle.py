"""Run a MONAI bundle the user downloaded: map its configs onto a :class:`Pipeline`.

A bundle folder holds ``configs/inference.json`` (or ``.yaml``/``.yml``),
``configs/metadata.json`` and ``models/model.pt`` (a state dict). medrecon does
not run the bundle's own workflow; it reads the preprocessing and inferer
sections and maps them onto its own steps, and builds only ``network_def``.

Bundle configs are code: ``_target_`` instantiates any importable class and
``$`` strings are Python expressions. So nothing in them is evaluated unless the
caller passes ``trust=True`` (CLI: ``--trust-bundle``).

Mapping (preprocessing and inferer in :mod:`medrecon.pipeline.bundle_transforms`;
anything else in ``preprocessing`` is refused, because silently dropping a step
would feed the network differently scaled data):

* ``Orientationd(axcodes)`` -> ``orientation``; ``Spacingd(pixdim)`` -> ``spacing``
* ``ScaleIntensityRanged(a_min, a_max, b_min=0, b_max=1, clip)`` -> ``ct_window``
* ``NormalizeIntensityd(nonzero)`` -> ``zscore``
* ``ScaleIntensityRangePercentilesd(lower, upper, b_min=0, b_max=1, clip)`` -> ``percentile``
* ``CropForegroundd(margin)`` -> ``crop_foreground`` (False when absent)
* loading / channel / type plumbing is ignored
* ``SlidingWindowInferer`` -> :class:`InferenceSpec` (MONAI's defaults where unset)
* labels: ``metadata.json`` ``network_data_format.outputs.pred.channel_def``,
  channel ``i`` -> label value ``i``; channel 0 must be background
* modality: metadata ``inputs.image.modality``; else CT when the intensity window
  starts below 0 (Hounsfield units), else MR
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from medrecon.errors import PipelineError
from medrecon.pipeline.bundle_transforms import dig, inferer, preprocessing
from medrecon.pipeline.config import Label, NetworkSpec, Pipeline, PreprocessSpec, WeightsSpec
from medrecon.pipeline.terminology import describe

__all__ = ["TRUST_FLAG", "load_bundle"]

log = logging.getLogger(__name__)

TRUST_FLAG = "--trust-bundle"
_CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
_BACKGROUND = {"background", "bg", "_background_"}


def load_bundle(path: str | Path, *, trust: bool = False) -> Pipeline:
    """Read the MONAI bundle at ``path`` (its folder or its inference config) as a Pipeline.

    The network is built lazily by ``pipeline.network.factory()``; the weights
    file is checked to exist but not read. Raises :class:`PipelineError` for
    anything missing, malformed, untrusted or not mappable.
    """
    root = _bundle_root(Path(path).expanduser())
    config_path = _inference_config(root)
    meta_path = root / "configs" / "metadata.json"
    if not meta_path.is_file():
        raise PipelineError(f"{meta_path}: missing; a MONAI bundle needs configs/metadata.json")
    weights_path = _weights(root)
    config, metadata = _read(config_path), _read(meta_path)
    if not trust:
        raise PipelineError(
            f"{config_path}: MONAI bundle configs can run arbitrary Python (`_target_` "
            "instantiation and `$` expressions), so medrecon does not load them by default. "
            f"If you trust where '{root.name}' came from, pass {TRUST_FLAG} "
            "(load_bundle(..., trust=True) in Python)."
        )
    parser = _parser(config, metadata, root)
    resolve = _Resolver(parser, config_path)
    preprocess = preprocessing(resolve, config)
    labels, out_channels = _labels(metadata, meta_path)
    net_key = "network_def" if "network_def" in config else "network"
    args = {"out_channels": out_channels}
    in_channels = _channels(resolve, config, metadata, net_key, out_channels)
    if in_channels is not None:
        args["in_channels"] = in_channels
    name = str(metadata.get("name") or root.name)
    pipeline = Pipeline(
        name=name,
        modality=_modality(metadata, preprocess),
        labels=labels,
        preprocess=preprocess,
        network=NetworkSpec(
            name=f"bundle:{name}",
            args=args,
            factory=_network_factory(config, metadata, root, net_key, config_path),
        ),
        weights=WeightsSpec(path=weights_path, sha256=None),
        inference=inferer(resolve, config, metadata),
        description=str(metadata.get("description") or ""),
        version=str(metadata.get("version") or "1"),
        source=config_path,
    )
    log.info("loaded MONAI bundle %s (%d labels) from %s", name, len(labels), root)
    return pipeline


def _bundle_root(path: Path) -> Path:
    if not path.exists():
        raise PipelineError(f"{path}: no such bundle folder")
    if path.is_file():
        if path.name in _CONFIG_NAMES and path.parent.name == "configs":
            return path.parent.parent.resolve()
        raise PipelineError(
            f"{path}: not a bundle folder; unzip a downloaded bundle and pass its folder"
        )
    if not (path / "configs").is_dir():
        # `monai.bundle download` extracts into <dir>/<bundle name>/: accept the parent.
        inner = [p for p in path.iterdir() if (p / "configs").is_dir()]
        if len(inner) == 1:
            return inner[0].resolve()
        raise PipelineError(f"{path}: not a MONAI bundle (no configs/ folder)")
    return path.resolve()


def _inference_config(root: Path) -> Path:
    found = [root / "configs" / n for n in _CONFIG_NAMES if (root / "configs" / n).is_file()]
    if not found:
        raise PipelineError(
            f"{root / 'configs'}: no inference config; expected one of {', '.join(_CONFIG_NAMES)}"
        )
    if len(found) > 1:
        raise PipelineError(
            f"{root / 'configs'}: several inference configs ({', '.join(p.name for p in found)}); "
            "keep the one the bundle should run"
        )
    return found[0]


def _weights(root: Path) -> Path:
    model = root / "models" / "model.pt"
    if model.is_file():
        return model.resolve()
    if (root / "models" / "model.ts").is_file():
        raise PipelineError(
            f"{root / 'models' / 'model.ts'}: TorchScript bundles are not supported; "
            "medrecon needs models/model.pt (a state dict) - download the bundle's non-TorchScript "
            "variant"
        )
    raise PipelineError(f"{model}: missing; a bundle's weights must be in models/model.pt")


def _read(path: Path) -> dict[str, Any]:
    """Parse JSON or YAML without evaluating anything (safe loaders only)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: invalid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a mapping at the top level")
    return data


def _parser(config: dict[str, Any], metadata: dict[str, Any], root: Path) -> Any:
    from monai.bundle import ConfigParser  # heavy import; only bundle users pay it

    # ConfigParser rewrites the dict in place while resolving: give it a copy.
    parser = ConfigParser(copy.deepcopy(config))
    parser.read_meta(copy.deepcopy(metadata))
    # `monai.bundle run` is normally told the bundle root; expressions build paths from it.
    parser["bundle_root"] = str(root)
    return parser


class _Resolver:
    """Resolve one config id (references and expressions) without instantiating anything."""

    def __init__(self, parser: Any, source: Path) -> None:
        self.parser, self.source = parser, source

    def __call__(self, id_: str) -> Any:
        try:
            value = self.parser.get_parsed_content(id_, instantiate=False)
        except Exception as exc:  # bundle expressions can raise anything
            raise PipelineError(f"{self.source}: cannot resolve `{id_}`: {exc}") from exc
        return _plain(value)


def _plain(value: Any) -> Any:
    from monai.bundle.config_item import ConfigItem

    if isinstance(value, ConfigItem):
        return _plain(value.get_config())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _labels(metadata: dict[str, Any], meta_path: Path) -> tuple[tuple[Label, ...], int]:
    outputs = dig(metadata, "network_data_format", "outputs") or {}
    output = outputs.get("pred") if "pred" in outputs else None
    if output is None and len(outputs) == 1:
        output = next(iter(outputs.values()))
    channel_def = dig(output, "channel_def")
    key = "network_data_format.outputs.pred.channel_def"
    if not isinstance(channel_def, dict) or not channel_def:
        raise PipelineError(f"{meta_path}: `{key}` is missing; it names the output channels")
    try:
        names = {int(k): str(v).strip() for k, v in channel_def.items()}
    except ValueError:
        raise PipelineError(f"{meta_path}: `{key}` keys must be channel numbers") from None
    if sorted(names) != list(range(len(names))):
        raise PipelineError(
            f"{meta_path}: `{key}` must number channels 0..N-1, got {sorted(names)}"
        )
    if names[0].lower() not in _BACKGROUND:
        raise PipelineError(
            f"{meta_path}: `{key}` channel 0 is {names[0]!r}; medrecon needs channel 0 to be "
            "background (one softmax channel per label, as in a label map)"
        )
    labels = tuple(describe(names[i], i) for i in range(1, len(names)))
    if not labels:
        raise PipelineError(f"{meta_path}: `{key}` has no channel besides background")
    seen = [label.name for label in labels]
    if len(set(seen)) != len(seen):
        raise PipelineError(f"{meta_path}: `{key}` repeats a label name: {seen}")
    return labels, len(names)


def _int_or_none(resolve: _Resolver, config: dict[str, Any], net_key: str, arg: str) -> int | None:
    section = config.get(net_key)
    if not isinstance(section, dict) or arg not in section:
        return None
    value = resolve(f"{net_key}::{arg}")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _channels(
    resolve: _Resolver,
    config: dict[str, Any],
    metadata: dict[str, Any],
    net_key: str,
    out_channels: int,
) -> int | None:
    """The network's input channels if known (refused unless 1); checks out_channels."""
    if not isinstance(config.get(net_key), dict):
        raise PipelineError(f"{resolve.source}: no `network_def` component to build the network")
    declared = _int_or_none(resolve, config, net_key, "out_channels")
    if declared is not None and declared != out_channels:
        raise PipelineError(
            f"{resolve.source}: `{net_key}.out_channels` is {declared} but metadata.json's "
            f"channel_def names {out_channels} channels"
        )
    in_channels = _int_or_none(resolve, config, net_key, "in_channels")
    if in_channels is None:
        declared = dig(metadata, "network_data_format", "inputs", "image", "num_channels")
        in_channels = declared if isinstance(declared, int) else None
    if in_channels is not None and in_channels != 1:
        raise PipelineError(
            f"{resolve.source}: the network takes {in_channels} input channels; medrecon feeds "
            "it one volume (multi-channel bundles are not supported)"
        )
    return in_channels


def _modality(metadata: dict[str, Any], preprocess: PreprocessSpec) -> str:
    declared = dig(metadata, "network_data_format", "inputs", "image", "modality")
    if isinstance(declared, str) and declared.strip():
        modality = declared.strip().upper()
        return "MR" if modality == "MRI" else modality
    window = preprocess.intensity.window
    # A window reaching below 0 only makes sense in Hounsfield units.
    return "CT" if window is not None and window[0] < 0 else "MR"


def _network_factory(
    config: dict[str, Any], metadata: dict[str, Any], root: Path, key: str, source: Path
) -> Callable[[], Any]:
    config, metadata = copy.deepcopy(config), copy.deepcopy(metadata)

    def build() -> Any:
        """Instantiate the bundle's network (runs the bundle's config code)."""
        import torch

        try:
            network = _parser(config, metadata, root).get_parsed_content(key, instantiate=True)
        except Exception as exc:  # any error from the bundle's own code
            raise PipelineError(f"{source}: building `{key}` failed: {exc}") from exc
        if not isinstance(network, torch.nn.Module):
            raise PipelineError(
                f"{source}: `{key}` built a {type(network).__name__}, not a torch module"
            )
        return network

    return build
