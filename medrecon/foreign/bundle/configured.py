"""Evaluate a trusted bundle's config: its network, transforms and inferer, as MONAI would.

The config is parsed by ``monai.bundle.ConfigParser`` with ``bundle_root`` set
to the bundle folder and ``device`` set to medrecon's chosen device, and with
the bundle folder importable (``monai.bundle run`` puts it on ``sys.path``), so
bundle-local ``scripts.*`` transforms and networks resolve. Only what the
bundle's ``SupervisedEvaluator`` step uses is instantiated: ``network_def``
(its weights from ``models/model.pt``, read ``weights_only``), ``preprocessing``,
the evaluator's ``inferer`` and ``postprocessing``, and its ``amp`` flag. The
dataset, dataloader, handlers and ``run`` list are never touched.

Two steps are left out: the loader (``LoadImaged``, replaced by
:mod:`medrecon.foreign.bundle.loader`) and file writers in ``postprocessing``
(``SaveImaged``...): medrecon writes its own outputs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrecon.errors import PipelineError
from medrecon.foreign.bundle.load import BundleSpec
from medrecon.pipeline.config import WeightsSpec
from medrecon.pipeline.model import read_state_dict

__all__ = ["Configured", "configure", "importable"]

log = logging.getLogger(__name__)

#: Evaluators whose iteration the engine replays (prepare batch, infer, decollate, post).
_EVALUATORS = ("SupervisedEvaluator",)


@dataclass
class Configured:
    """A bundle's inference parts, instantiated once and reused for many volumes."""

    load: Any
    preprocessing: Any
    inferer: Any
    postprocessing: Any | None
    network: Any
    amp: bool
    amp_kwargs: dict[str, Any] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


@contextlib.contextmanager
def importable(root: Path) -> Iterator[None]:
    """The bundle folder on ``sys.path``, its own ``scripts`` package ahead of any other.

    Two bundles both ship a ``scripts`` package: a module cached from another
    bundle's folder is dropped so this bundle's is imported.
    """
    local = {p.stem for p in root.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    for name in list(sys.modules):
        top = name.partition(".")[0]
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if top in local and not Path(module_file).resolve().is_relative_to(root):
            del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(root))


def configure(spec: BundleSpec, device: str) -> Configured:
    """Parse the bundle's config and instantiate what inference needs, on ``device``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(spec.config))
    parser.read_meta(str(spec.metadata))
    # As `monai.bundle run --bundle_root`: expressions build paths from it.
    parser["bundle_root"] = str(spec.root)
    parser["device"] = f"$torch.device({device!r})"
    if isinstance(parser.get("inferer"), dict) and "device" in parser["inferer"]:
        # e.g. wholeBody_ct_segmentation stitches on "cuda if available": follow medrecon's choice.
        parser["inferer#device"] = f"$torch.device({device!r})"
    where = str(spec.config)
    evaluator = _evaluator(parser, where)
    with importable(spec.root):
        network = _network(parser, spec, device, where)
        load, preprocessing = _preprocessing(parser, spec.input_key, where)
        inferer = _inferer(parser, evaluator, where)
        post_id = _ref(evaluator, "postprocessing")
        postprocessing, left_out = (None, [])
        if post_id is not None:
            postprocessing, left_out = _without_writers(_parsed(parser, post_id, where))
        amp = bool(_parsed(parser, "evaluator#amp", where)) if "amp" in evaluator else False
        amp_kwargs = (
            _parsed(parser, "evaluator#amp_kwargs", where) if "amp_kwargs" in evaluator else {}
        )
    for name in left_out:
        log.info("%s: postprocessing step %s left out (medrecon writes the outputs)", where, name)
    return Configured(
        load, preprocessing, inferer, postprocessing, network, amp, dict(amp_kwargs or {}), left_out
    )


def _parsed(parser: Any, id_: str, where: str) -> Any:
    try:
        return parser.get_parsed_content(id_)
    except Exception as exc:  # the bundle's own code can raise anything
        raise PipelineError(
            f"{where}: evaluating `{id_}` failed: {type(exc).__name__}: {exc}"
        ) from exc


def _ref(evaluator: dict[str, Any], field_name: str) -> str | None:
    """The config id an evaluator argument points to (``@inferer`` -> ``inferer``)."""
    value = evaluator.get(field_name)
    if value is None:
        return None
    if isinstance(value, str) and value.startswith("@") and " " not in value:
        return value[1:]
    return f"evaluator#{field_name}"  # defined inline, or an expression


def _evaluator(parser: Any, where: str) -> dict[str, Any]:
    evaluator = parser.get("evaluator")
    if not isinstance(evaluator, dict):
        raise PipelineError(
            f"{where}: no `evaluator` component; medrecon runs the inference step of a bundle's "
            "SupervisedEvaluator (is this the bundle's inference config?)"
        )
    target = str(evaluator.get("_target_", "")).rsplit(".", 1)[-1]
    if target not in _EVALUATORS:
        raise PipelineError(
            f"{where}: evaluator `{evaluator.get('_target_')}` is not supported; medrecon "
            f"replays the iteration of {', '.join(_EVALUATORS)} only"
        )
    for key in ("prepare_batch", "iteration_update"):
        if key in evaluator:
            raise PipelineError(
                f"{where}: the evaluator sets a custom `{key}`; medrecon replays only "
                "SupervisedEvaluator's default iteration"
            )
    if str(evaluator.get("decollate", True)).lower() in ("false", "0"):
        raise PipelineError(f"{where}: `evaluator.decollate: false` is not supported")
    return evaluator


def _network(parser: Any, spec: BundleSpec, device: str, where: str) -> Any:
    import torch

    network = _parsed(parser, spec.network_key, where)
    if not isinstance(network, torch.nn.Module):
        raise PipelineError(
            f"{where}: `{spec.network_key}` built a {type(network).__name__}, not a torch module"
        )
    state = read_state_dict(WeightsSpec(path=spec.weights, sha256=None))
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PipelineError(
            f"{spec.weights}: the weights do not fit the bundle's `{spec.network_key}`: {exc}"
        ) from exc
    return network.to(device).eval()


def _preprocessing(parser: Any, key: str, where: str) -> tuple[Any, Any]:
    """The bundle's LoadImaged and its preprocessing without it."""
    from monai.transforms import Compose, LoadImaged

    if "preprocessing" not in parser.get():
        raise PipelineError(f"{where}: no `preprocessing` section")
    compose = _parsed(parser, "preprocessing", where)
    if not isinstance(compose, Compose) or not compose.transforms:
        raise PipelineError(f"{where}: `preprocessing` must be a Compose of transforms")
    load = compose.transforms[0]
    if not isinstance(load, LoadImaged):
        raise PipelineError(
            f"{where}: `preprocessing` starts with {type(load).__name__}, not LoadImaged; "
            "medrecon replaces the loading step, so it must come first"
        )
    keys = [str(k) for k in load.keys]
    if keys != [key]:
        raise PipelineError(
            f"{where}: the bundle loads {', '.join(keys)}; medrecon feeds a bundle one image "
            f"(`{key}`), so bundles that need several input images are not supported"
        )
    rest = copy.copy(compose)
    rest.transforms = tuple(compose.transforms[1:])
    return load, rest


def _inferer(parser: Any, evaluator: dict[str, Any], where: str) -> Any:
    from monai.inferers import Inferer

    inferer_id = _ref(evaluator, "inferer")
    if inferer_id is None:
        raise PipelineError(f"{where}: the evaluator names no `inferer`")
    inferer = _parsed(parser, inferer_id, where)
    if not isinstance(inferer, Inferer):
        raise PipelineError(
            f"{where}: `{inferer_id}` is a {type(inferer).__name__}, not a MONAI Inferer"
        )
    return inferer


def _without_writers(compose: Any) -> tuple[Any, list[str]]:
    """``postprocessing`` minus the steps that write files."""
    from monai.transforms import Compose, SaveImage, SaveImaged

    if not isinstance(compose, Compose):
        return compose, []

    def writes(step: Any) -> bool:
        name = type(step).__name__
        return (
            isinstance(step, (SaveImage, SaveImaged)) or name.startswith("Save") or "Writer" in name
        )

    kept = tuple(t for t in compose.transforms if not writes(t))
    left_out = [type(t).__name__ for t in compose.transforms if writes(t)]
    post = copy.copy(compose)
    post.transforms = kept
    return post, left_out
