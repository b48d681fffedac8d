"""``OUTDIR/cohort.csv``: one row per study, ready for a statistics package.

Columns, in order: ``study``, the manifest's own extra columns, ``status``
(complete / failed / pending), ``attempts``, ``resumed`` (finished by an
earlier run), ``input``, ``input_kind``, ``series_uid``, ``series_number``,
``pipeline``, ``device``, ``worker``, ``seconds`` (wall time of the last attempt),
``time_<stage>_s`` per stage of ``run_study``, ``<label>_ml`` per label of the
pipeline (0 when a complete study has none of it; empty when it failed or its
outputs had no stats), then
``n_warnings`` and ``error``. Written atomically, so a reader never sees half.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from medrecon.atomic import atomic_write_text
from medrecon.cohort.state import COMPLETE, StudyRecord
from medrecon.cohort.studies import Study

__all__ = ["COHORT_CSV", "PENDING", "cohort_rows", "write_cohort_csv"]

COHORT_CSV = "cohort.csv"
PENDING = "pending"

_FIXED = (
    "status",
    "attempts",
    "resumed",
    "input",
    "input_kind",
    "series_uid",
    "series_number",
    "pipeline",
    "device",
    "worker",
    "seconds",
)


def _column(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")


def _ordered_union(lists) -> list[str]:
    seen: dict[str, None] = {}
    for names in lists:
        for name in names:
            seen.setdefault(name, None)
    return list(seen)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def cohort_rows(
    studies: Sequence[Study], records: dict[str, StudyRecord], labels: Sequence[str] = ()
) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (as text) for ``studies``, in their order."""
    done = [records[s.id] for s in studies if s.id in records]
    extras = _ordered_union(s.extra for s in studies)
    # A manifest column named like one of ours keeps its values under manifest_<name>.
    ours = {"study", *_FIXED, "n_warnings", "error"}
    shown = {e: f"manifest_{e}" if e in ours or e.endswith("_ml") else e for e in extras}
    stages = _ordered_union(r.timings for r in done)
    names = _ordered_union([list(labels), *(r.volumes_ml or {} for r in done)])
    header = ["study", *shown.values(), *_FIXED]
    header += [f"time_{_column(s)}_s" for s in stages]
    header += [f"{_column(n)}_ml" for n in names] + ["n_warnings", "error"]
    rows = []
    for study in studies:
        r = records.get(study.id)
        row = {"study": study.id, **{shown[k]: study.extra.get(k, "") for k in extras}}
        if r is None:
            row.update(status=PENDING, input=str(study.path))
            rows.append(row)
            continue
        row.update(
            status=r.status,
            attempts=str(r.attempts),
            resumed="yes" if r.resumed else "no",
            input=r.input or str(study.path),
            input_kind=r.input_kind,
            series_uid=r.series_uid,
            series_number="" if r.series_number is None else str(r.series_number),
            pipeline=r.pipeline,
            device=r.device,
            worker=r.worker,
            seconds=_number(r.seconds),
            n_warnings=str(len(r.warnings)),
            error=r.error,
        )
        for s in stages:
            row[f"time_{_column(s)}_s"] = _number(r.timings.get(s))
        measured = r.status == COMPLETE and r.volumes_ml is not None
        for n in names:
            value = (r.volumes_ml or {}).get(n, 0.0 if measured else None)
            row[f"{_column(n)}_ml"] = _number(value)
        rows.append(row)
    return header, rows


def write_cohort_csv(
    path: Path,
    studies: Sequence[Study],
    records: dict[str, StudyRecord],
    labels: Sequence[str] = (),
) -> Path:
    """Write cohort.csv (atomically) for ``studies``; ``labels`` fixes the volume
    columns' order (the pipeline's labels), other names found are appended."""
    header, rows = cohort_rows(studies, records, labels)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())
