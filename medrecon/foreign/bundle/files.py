"""A MONAI bundle folder on disk: where its configs and weights are, read safely.

Nothing here evaluates the configs: JSON and YAML are parsed with safe loaders,
so these functions may run before the user has said they trust the bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from medrecon.errors import PipelineError

__all__ = ["CONFIG_NAMES", "bundle_root", "inference_config", "read_mapping", "weights_file"]

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")


def bundle_root(path: Path) -> Path:
    """The bundle's root folder, given it, its inference config, or the folder around it."""
    if not path.exists():
        raise PipelineError(f"{path}: no such bundle folder")
    if path.is_file():
        if path.name in CONFIG_NAMES and path.parent.name == "configs":
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


def inference_config(root: Path) -> Path:
    """``configs/inference.{json,yaml,yml}``: exactly one must exist."""
    found = [root / "configs" / n for n in CONFIG_NAMES if (root / "configs" / n).is_file()]
    if not found:
        raise PipelineError(
            f"{root / 'configs'}: no inference config; expected one of {', '.join(CONFIG_NAMES)}"
        )
    if len(found) > 1:
        raise PipelineError(
            f"{root / 'configs'}: several inference configs ({', '.join(p.name for p in found)}); "
            "keep the one the bundle should run"
        )
    return found[0]


def weights_file(root: Path) -> Path:
    """``models/model.pt`` (a state dict); TorchScript-only bundles are refused."""
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


def read_mapping(path: Path) -> dict[str, Any]:
    """Parse a JSON or YAML mapping without evaluating anything (safe loaders only)."""
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
