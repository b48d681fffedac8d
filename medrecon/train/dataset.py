"""Training cohorts: where the image/label pairs are, how their labels map onto a
pipeline's label table, and which voxels are held out for validation.

A cohort is one of:

* an nnU-Net-style folder: ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``
  and ``dataset.json`` (its ``labels`` table, v1 ``{"1": "liver"}`` or v2
  ``{"liver": 1}``);
* a JSON or YAML file: ``{"cases": [{"id", "image", "label"}, ...]}`` plus optional
  ``source_labels`` (a table or a JSON file of ``value -> name``), ``remap``
  (pipeline label -> source name(s)), ``unmapped`` (``error`` or ``background``),
  ``validation`` and ``augment``; paths are relative to the file;
* a CSV file with ``image,label`` columns (and optionally ``id``) whose label values
  are already the pipeline's.

nnU-Net's ``dataset.json`` may carry the same ``remap``/``unmapped``/``validation``
keys. Everything is checked by :func:`check_cases` before training starts.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medrecon.errors import InputError
from medrecon.pipeline.config import Pipeline

__all__ = [
    "Case",
    "Cohort",
    "ValidationSpec",
    "label_lookup",
    "read_cohort",
]

logger = logging.getLogger(__name__)

_NIFTI = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass(frozen=True)
class Case:
    """One labelled image."""

    id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class ValidationSpec:
    """What is held out. ``cases``/``fraction`` hold out whole cases; ``slab_mm`` holds
    out, in every case, the axial slabs ``slab_mm`` thick whose index (counted from the
    case's most inferior slice) is ``offset`` modulo ``every``: their labels never reach
    the loss, and validation Dice is computed on them only."""

    cases: tuple[str, ...] = ()
    fraction: float = 0.0
    slab_mm: float | None = None
    every: int = 3
    offset: int = 1

    @property
    def enabled(self) -> bool:
        return bool(self.cases) or self.fraction > 0 or self.slab_mm is not None


@dataclass(frozen=True)
class Cohort:
    """A validated description of a training cohort (files are read later)."""

    source: Path
    cases: tuple[Case, ...]
    #: ``value -> name`` of the label files, or None when values are the pipeline's own.
    source_labels: dict[int, str] | None = None
    #: pipeline label name -> source label names merged into it.
    remap: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: What happens to source labels the pipeline lacks: "error" or "background".
    unmapped: str = "error"
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    #: Overrides of :class:`medrecon.train.augment.AugmentConfig` fields.
    augment: dict[str, Any] = field(default_factory=dict)


def _is_image(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI)


def _table(raw: Any, where: str) -> dict[int, str]:
    """A ``value -> name`` table from v1 ``{"1": "liver"}`` or v2 ``{"liver": 1}``."""
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{where}: the label table must be a non-empty mapping")
    table: dict[int, str] = {}
    for key, value in raw.items():
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
            number, name = value, key  # nnU-Net v2: name -> value
        else:
            number, name = key, value
        try:
            table[int(number)] = str(name)
        except (TypeError, ValueError):
            raise InputError(f"{where}: label {key!r}: {value!r} is not value -> name") from None
    table.pop(0, None)  # background needs no mapping
    return table


def _validation(raw: Any, where: str) -> ValidationSpec:
    if raw is None:
        return ValidationSpec()
    if not isinstance(raw, dict):
        raise InputError(f"{where}: 'validation' must be a mapping")
    known = {"cases", "fraction", "slab_mm", "every", "offset"}
    if unknown := set(raw) - known:
        raise InputError(f"{where}: unknown validation keys {sorted(unknown)}; use {sorted(known)}")
    spec = ValidationSpec(
        cases=tuple(str(c) for c in raw.get("cases", ())),
        fraction=float(raw.get("fraction", 0.0)),
        slab_mm=float(raw["slab_mm"]) if raw.get("slab_mm") is not None else None,
        every=int(raw.get("every", 3)),
        offset=int(raw.get("offset", 1)),
    )
    if not 0.0 <= spec.fraction < 1.0:
        raise InputError(f"{where}: validation fraction must be in [0, 1), got {spec.fraction}")
    if spec.slab_mm is not None and (spec.slab_mm <= 0 or spec.every < 2):
        raise InputError(f"{where}: validation slabs need slab_mm > 0 and every >= 2")
    return spec


def _remap(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: 'remap' must map pipeline label names to source names")
    return {
        str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in raw.items()
    }


def _resolve(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: expected a file path, got {value!r}")
    path = Path(value)
    return path if path.is_absolute() else (base / path)


def _read_nnunet(folder: Path) -> Cohort:
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise InputError(f"{folder}: not an nnU-Net dataset (no dataset.json)")
    meta = json.loads(meta_path.read_text())
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "CT"}
    if len(channels) != 1:
        raise InputError(f"{meta_path}: {len(channels)} input channels; medrecon trains on one")
    cases = []
    for label in sorted((folder / "labelsTr").glob("*")):
        if not _is_image(label) or label.name.startswith("."):
            continue
        stem = label.name.split(".")[0]
        images = [p for p in (folder / "imagesTr").glob(f"{stem}_0000.*") if _is_image(p)]
        if not images:
            raise InputError(f"case {stem}: {label} has no image imagesTr/{stem}_0000.*")
        cases.append(Case(stem, images[0], label))
    return Cohort(
        source=folder,
        cases=tuple(cases),
        source_labels=_table(meta["labels"], str(meta_path)) if "labels" in meta else None,
        remap=_remap(meta.get("remap"), str(meta_path)),
        unmapped=str(meta.get("unmapped", "error")),
        validation=_validation(meta.get("validation"), str(meta_path)),
        augment=dict(meta.get("augment") or {}),
    )


def _read_csv(path: Path) -> Cohort:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    cases = []
    for n, row in enumerate(rows, start=2):
        if not row.get("image") or not row.get("label"):
            raise InputError(f"{path} line {n}: needs 'image' and 'label' columns")
        image = _resolve(path.parent, row["image"], f"{path} line {n}")
        label = _resolve(path.parent, row["label"], f"{path} line {n}")
        cases.append(Case(row.get("id") or f"case{n - 1:04d}", image, label))
    return Cohort(source=path, cases=tuple(cases))


def _read_mapping(path: Path) -> Cohort:
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
    else:
        import yaml

        data = yaml.safe_load(path.read_text())
    where = str(path)
    if isinstance(data, list):
        data = {"cases": data}
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise InputError(f"{where}: expected a list of cases or a mapping with 'cases'")
    cases = []
    for n, item in enumerate(data["cases"]):
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            raise InputError(f"{where}: case {n} needs 'image' and 'label'")
        case_id = str(item.get("id", f"case{n:04d}"))
        cases.append(
            Case(
                case_id,
                _resolve(path.parent, item["image"], f"{where} case {case_id}"),
                _resolve(path.parent, item["label"], f"{where} case {case_id}"),
            )
        )
    table = data.get("source_labels")
    if isinstance(table, str):
        table_path = _resolve(path.parent, table, where)
        table = json.loads(table_path.read_text())
    return Cohort(
        source=path,
        cases=tuple(cases),
        source_labels=_table(table, where) if table is not None else None,
        remap=_remap(data.get("remap"), where),
        unmapped=str(data.get("unmapped", "error")),
        validation=_validation(data.get("validation"), where),
        augment=dict(data.get("augment") or {}),
    )


def read_cohort(path: str | Path) -> Cohort:
    """A cohort from an nnU-Net folder or a JSON/YAML/CSV list; raises on a bad description."""
    path = Path(path)
    if path.is_dir():
        cohort = _read_nnunet(path)
    elif not path.is_file():
        raise InputError(f"dataset {path} does not exist")
    elif path.suffix.lower() == ".csv":
        cohort = _read_csv(path)
    elif path.suffix.lower() in (".json", ".yaml", ".yml"):
        cohort = _read_mapping(path)
    else:
        raise InputError(f"dataset {path}: use a folder, or a .json, .yaml or .csv case list")
    if not cohort.cases:
        raise InputError(f"dataset {path} lists no cases: nothing to train on")
    if cohort.unmapped not in ("error", "background"):
        raise InputError(f"dataset {path}: unmapped must be 'error' or 'background'")
    seen: set[str] = set()
    for case in cohort.cases:
        if case.id in seen:
            raise InputError(f"dataset {path}: case id {case.id!r} appears twice")
        seen.add(case.id)
        for p in (case.image, case.label):
            if not p.is_file():
                raise InputError(f"case {case.id}: file {p} does not exist")
    return cohort


def label_lookup(cohort: Cohort, pipeline: Pipeline) -> dict[int, int]:
    """``source value -> pipeline value`` for every source label (0 = background).

    Without a source table the values must already be the pipeline's (identity).
    """
    targets = {label.name: label.value for label in pipeline.labels}
    if unknown := set(cohort.remap) - set(targets):
        raise InputError(
            f"dataset {cohort.source}: remap names {sorted(unknown)}, which pipeline "
            f"{pipeline.name} lacks; its labels are {sorted(targets)}"
        )
    if cohort.source_labels is None:
        return {value: value for value in targets.values()}
    by_source = {src: targets[dst] for dst, srcs in cohort.remap.items() for src in srcs}
    lookup: dict[int, int] = {}
    missing = []
    for value, name in cohort.source_labels.items():
        if name in by_source:
            lookup[value] = by_source[name]
        elif name in targets and not cohort.remap:
            lookup[value] = targets[name]  # same name, no explicit remap
        elif cohort.unmapped == "background":
            lookup[value] = 0
        else:
            missing.append(f"{value} ({name})")
    if missing:
        raise InputError(
            f"dataset {cohort.source}: source labels {', '.join(missing)} have no pipeline "
            f"label; add them to 'remap' or set 'unmapped: background'"
        )
    if unused := {s for srcs in cohort.remap.values() for s in srcs} - set(
        cohort.source_labels.values()
    ):
        raise InputError(f"dataset {cohort.source}: remap names unknown source labels {unused}")
    return lookup


def apply_lookup(label: np.ndarray, lookup: dict[int, int], case: Case) -> np.ndarray:
    """The label map in pipeline values; a value outside the table is an error naming it."""
    values = np.unique(label)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise InputError(f"case {case.id}: label {case.label} holds values outside 0..65535")
    if bad := sorted(int(v) for v in values if v != 0 and int(v) not in lookup):
        shown = f"{bad[:10]}".rstrip("]") + (
            f", ... ({len(bad)} in all)]" if len(bad) > 10 else "]"
        )
        raise InputError(
            f"case {case.id}: label {case.label} holds values {shown} that are not in the "
            "label table (pipeline labels or the dataset's source_labels)"
        )
    table = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.uint8)
    for src, dst in lookup.items():
        if src < table.size:
            table[src] = dst
    return table[label.astype(np.int64)]
