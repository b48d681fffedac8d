"""Compare a predicted label map with a reference: Dice, HD95 and surface Dice per label.

Metrics come from MONAI (``compute_dice``, ``compute_hausdorff_distance`` with
``percentile=95``, ``compute_surface_dice``), given the reference voxel spacing so
distances are in millimetres. Labels are matched by name, so the two maps may
use different values for the same organ. A prediction on another grid is
resampled onto the reference grid (nearest neighbour, in patient space) first.

Edge cases, per label:

* in neither map: ``status = "absent"``, Dice, HD95 and NSD are NaN (null in JSON);
* in one map only: ``status = "missing_in_pred"`` / ``"missing_in_ref"``, Dice 0,
  NSD 0, HD95 infinite (``inf`` in CSV and the table; null in JSON, which has no
  infinity, with the status saying why).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from medrecon.atomic import atomic_write_json, atomic_write_text
from medrecon.errors import InputError
from medrecon.train.label_inputs import LabelMap, on_reference_grid, read_label_map

__all__ = [
    "DEFAULT_TOLERANCE_MM",
    "EvaluationResult",
    "LabelMatchError",
    "LabelScore",
    "evaluate",
]

logger = logging.getLogger(__name__)

#: Default normalised-surface-Dice tolerance: boundary voxels within 2 mm count as correct.
DEFAULT_TOLERANCE_MM = 2.0

_FIELDS = (
    "name",
    "ref_value",
    "pred_value",
    "status",
    "dice",
    "hd95_mm",
    "nsd",
    "ref_voxels",
    "pred_voxels",
    "ref_volume_ml",
    "pred_volume_ml",
)


class LabelMatchError(InputError):
    """The two label maps share no label (by name), or a requested label is in neither."""


@dataclass(frozen=True)
class LabelScore:
    """One label's scores. Voxel counts and volumes are on the reference grid."""

    name: str
    ref_value: int | None
    pred_value: int | None
    status: str  # "ok", "missing_in_pred", "missing_in_ref" or "absent"
    dice: float
    hd95_mm: float
    nsd: float
    ref_voxels: int
    pred_voxels: int
    ref_volume_ml: float
    pred_volume_ml: float


def _json_number(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


@dataclass
class EvaluationResult:
    """Per-label scores of ``pred`` against ``ref``, and how they were computed."""

    scores: list[LabelScore]
    pred_source: str
    ref_source: str
    tolerance_mm: float
    spacing_mm: tuple[float, float, float]
    resampled: bool
    warnings: list[str] = field(default_factory=list)

    def score(self, name: str) -> LabelScore:
        """The score of the label called ``name`` (case and spaces ignored)."""
        key = _normalise(name)
        for s in self.scores:
            if _normalise(s.name) == key:
                return s
        raise KeyError(name)

    def summary(self) -> dict[str, float | int | None]:
        """Means over labels present in either map; HD95 over finite values only."""
        scored = [s for s in self.scores if s.status != "absent"]
        return {
            "labels_scored": len(scored),
            "mean_dice": _nanmean([s.dice for s in scored]),
            "mean_hd95_mm": _nanmean([s.hd95_mm for s in scored]),
            "mean_nsd": _nanmean([s.nsd for s in scored]),
        }

    def to_dict(self) -> dict:
        """JSON-ready: NaN and infinity become null (see ``notes`` and each ``status``)."""
        rows = []
        for s in self.scores:
            row = asdict(s)
            for key in ("dice", "hd95_mm", "nsd"):
                row[key] = _json_number(row[key])
            rows.append(row)
        return {
            "pred": self.pred_source,
            "ref": self.ref_source,
            "tolerance_mm": self.tolerance_mm,
            "spacing_mm": list(self.spacing_mm),
            "resampled": self.resampled,
            "notes": (
                "hd95_mm is null where a label is in only one map (infinite distance) or in "
                "neither; dice and nsd are null where it is in neither (status 'absent'). "
                "Voxels and volumes are counted on the reference grid."
            ),
            "warnings": list(self.warnings),
            "summary": self.summary(),
            "labels": rows,
        }

    def csv_text(self) -> str:
        """One row per label; ``inf`` and ``nan`` are written as such."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_FIELDS)
        for s in self.scores:
            writer.writerow([_csv_cell(getattr(s, f)) for f in _FIELDS])
        return buf.getvalue()

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`csv_text` atomically."""
        return atomic_write_text(path, self.csv_text())

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` atomically."""
        return atomic_write_json(path, self.to_dict())

    def table(self) -> str:
        """A fixed-width text table for the terminal, with a mean line."""
        head = ("label", "ref", "pred", "Dice", "HD95 mm", f"NSD@{self.tolerance_mm:g}mm")
        head += ("ref mL", "pred mL", "status")
        rows = [
            (
                s.name,
                "-" if s.ref_value is None else str(s.ref_value),
                "-" if s.pred_value is None else str(s.pred_value),
                f"{s.dice:.4f}",
                f"{s.hd95_mm:.2f}",
                f"{s.nsd:.4f}",
                f"{s.ref_volume_ml:.2f}",
                f"{s.pred_volume_ml:.2f}",
                s.status,
            )
            for s in self.scores
        ]
        summ = self.summary()
        fmt = {"mean_dice": ".4f", "mean_hd95_mm": ".2f", "mean_nsd": ".4f"}
        means = {k: "-" if summ[k] is None else format(summ[k], f) for k, f in fmt.items()}
        label_count = f"{summ['labels_scored']} labels"
        mean = (means["mean_dice"], means["mean_hd95_mm"], means["mean_nsd"])
        rows.append(("mean", "", "", *mean, "", "", label_count))
        widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
        lines = [
            "  ".join(
                v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))
            ).rstrip()
            for r in [head, *rows]
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        return "\n".join(lines)


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) else f"{value:.6f}"
    return value


def _normalise(name: str) -> str:
    # .ctbl names cannot hold spaces (written as "_"), so compare them the same way.
    return "_".join(name.lower().split())


def _index_names(names: dict[int, str], source: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for value, name in sorted(names.items()):
        key = _normalise(name)
        if key in index:
            raise LabelMatchError(
                f"{source}: label name {name!r} is used for values {index[key]} and {value}; "
                "names must be unique to match labels by name"
            )
        index[key] = value
    return index


def _present(array: np.ndarray) -> set[int]:
    return {int(v) for v in np.unique(array) if v != 0}


def _few(names: list[str], limit: int = 10) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _pairs_by_name(pred: LabelMap, ref: LabelMap, warn: list[str], restricted: bool) -> list[tuple]:
    """Pairs ``(name, ref value, pred value or None)`` for every reference label."""
    pred_index = _index_names(pred.names or {}, pred.source)
    ref_index = _index_names(ref.names or {}, ref.source)
    common = set(pred_index) & set(ref_index)
    if not common:
        raise LabelMatchError(
            f"no label name is in both maps: reference {ref.source} has "
            f"{_few(sorted(ref_index), 8)}; prediction {pred.source} has "
            f"{_few(sorted(pred_index), 8)}. "
            "Check the label tables (.ctbl/.labels.csv/labels.json) beside the files"
        )
    only_pred = sorted(set(pred_index) - common)
    if only_pred and not restricted:
        warn.append(f"not in the reference's label table (not scored): {_few(only_pred)}")
    return [
        (ref.names[v], v, pred_index.get(key))
        for key, v in sorted(ref_index.items(), key=lambda x: x[1])
    ]


def _pairs_by_value(
    pred: LabelMap, pred_arr: np.ndarray, ref: LabelMap, warn: list[str]
) -> list[tuple]:
    """Pairs ``(name, v, v)`` for every value in a table or in either map."""
    named = ref if ref.names else pred if pred.names else None
    if named is None:
        warn.append("neither map has label names: labels matched by value")
    else:
        other = pred if named is ref else ref
        warn.append(
            f"{other.source} has no label names (no table found beside it): labels matched "
            f"by value, names from {named.source}"
        )
    names = (named.names if named else None) or {}
    values = sorted(set(names) | _present(ref.volume.array) | _present(pred_arr))
    return [(names.get(v, f"label_{v}"), v, v) for v in values]


def _restrict(pairs: list[tuple], labels: Sequence[str]) -> list[tuple]:
    wanted = [_normalise(n) for n in labels]
    by_key = {_normalise(p[0]): p for p in pairs}
    unknown = [n for n, k in zip(labels, wanted) if k not in by_key]
    if unknown:
        raise LabelMatchError(f"label(s) {unknown} not found; the reference has {sorted(by_key)}")
    return [by_key[k] for k in dict.fromkeys(wanted)]


def _crop_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to their joint bounding box plus one background voxel each side.

    The margin keeps the edge voxels what they are in the full image, so the
    metrics are unchanged; it only saves memory and time on large grids.
    """
    union = a | b
    box = []
    for axis in range(3):
        hit = np.flatnonzero(union.any(axis=tuple(x for x in range(3) if x != axis)))
        box.append(slice(hit[0], hit[-1] + 1))
    return (np.pad(m[tuple(box)], 1) for m in (a, b))  # type: ignore[return-value]


def _surface_scores(
    ref_mask: np.ndarray, pred_mask: np.ndarray, spacing: tuple, tolerance_mm: float
) -> tuple[float, float, float]:
    """(Dice, HD95 mm, NSD) from MONAI for two non-empty masks."""
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    r, p = _crop_pair(ref_mask, pred_mask)
    y = torch.from_numpy(r[None, None].astype(np.float32))
    y_pred = torch.from_numpy(p[None, None].astype(np.float32))
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated always_return_as_numpy internally.
        warnings.filterwarnings("ignore", ".*always_return_as_numpy", FutureWarning)
        dice = compute_dice(y_pred, y, include_background=True, ignore_empty=False)
        hd95 = compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=list(spacing)
        )
        nsd = compute_surface_dice(
            y_pred, y, [tolerance_mm], include_background=True, spacing=list(spacing)
        )
    return float(dice[0, 0]), float(hd95[0, 0]), float(nsd[0, 0])


def _score_label(name, ref_value, pred_value, ref_arr, pred_arr, spacing, tol, voxel_ml):
    ref_mask = ref_arr == ref_value if ref_value is not None else np.zeros(ref_arr.shape, bool)
    pred_mask = pred_arr == pred_value if pred_value is not None else np.zeros(ref_arr.shape, bool)
    n_ref, n_pred = int(ref_mask.sum()), int(pred_mask.sum())
    if n_ref and n_pred:
        status = "ok"
        dice, hd95, nsd = _surface_scores(ref_mask, pred_mask, spacing, tol)
    elif n_ref or n_pred:
        status = "missing_in_pred" if n_ref else "missing_in_ref"
        dice, hd95, nsd = 0.0, math.inf, 0.0
    else:
        status, dice, hd95, nsd = "absent", math.nan, math.nan, math.nan
    return LabelScore(
        name, ref_value, pred_value, status, dice, hd95, nsd, n_ref, n_pred,
        n_ref * voxel_ml, n_pred * voxel_ml,
    )  # fmt: skip


def _as_label_map(x: LabelMap | str | os.PathLike[str]) -> LabelMap:
    return x if isinstance(x, LabelMap) else read_label_map(x)


def evaluate(
    pred: LabelMap | str | os.PathLike[str],
    ref: LabelMap | str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
) -> EvaluationResult:
    """Score ``pred`` against ``ref``, label by label.

    ``pred`` and ``ref`` are NIfTI files (label table beside them), ``.seg.nrrd``
    files, medrecon output folders or :class:`LabelMap` objects. ``labels``
    restricts the scoring to these names. ``tolerance_mm`` is the normalised
    surface Dice tolerance. HD95 is MONAI's: the larger of the two directed
    95th-percentile surface distances, in mm.
    """
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise InputError(f"tolerance must be a finite distance >= 0 mm, got {tolerance_mm}")
    pred_map, ref_map = _as_label_map(pred), _as_label_map(ref)
    # Reader warnings first (e.g. overlapping seg.nrrd segments flattened).
    warn = [*pred_map.volume.meta.warnings, *ref_map.volume.meta.warnings]
    n_read = len(warn)  # those were logged by the readers
    pred_arr, resampled = on_reference_grid(pred_map, ref_map, warn)
    if pred_map.names and ref_map.names:
        pairs = _pairs_by_name(pred_map, ref_map, warn, restricted=bool(labels))
    else:
        pairs = _pairs_by_value(pred_map, pred_arr, ref_map, warn)
    if labels:
        pairs = _restrict(pairs, labels)
    unmatched = [name for name, _, pred_value in pairs if pred_value is None]
    if unmatched:
        warn.append(f"not in the prediction's label table (scored as missing): {_few(unmatched)}")
    spacing = ref_map.volume.spacing
    voxel_ml = abs(float(np.linalg.det(ref_map.volume.affine[:3, :3]))) / 1000.0
    ref_arr = ref_map.volume.array
    scores = [
        _score_label(n, rv, pv, ref_arr, pred_arr, spacing, tolerance_mm, voxel_ml)
        for n, rv, pv in pairs
    ]
    for w in warn[n_read:]:
        logger.warning("%s", w)
    return EvaluationResult(
        scores, pred_map.source, ref_map.source, float(tolerance_mm), spacing, resampled, warn
    )
