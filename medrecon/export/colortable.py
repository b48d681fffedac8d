"""Slicer colour tables for a label map.

``.ctbl`` is Slicer's plain colour-table format: one ``value name R G B A``
line per label (names without spaces), comment lines starting with ``#``.

The CSV colour table (recent Slicer, added in 2025) also carries each label's
SNOMED CT codes. Its columns are the ones Slicer's own
``vtkMRMLColorTableStorageNode`` writes: ``LabelValue, Name, Color_R, Color_G,
Color_B, Color_A`` (0-255), then scheme/value/meaning triplets for Category,
Type, TypeModifier, Region and RegionModifier. Slicer names the table of a label
map ``<name>.nii.gz`` ``<name>.labels.csv`` when it exports one, and its colour
table reader claims the ``.labels.csv`` suffix, so ``labels.nii.gz`` goes with
``labels.labels.csv`` (see docs/slicer.md for what Slicer does with it on load).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from medrecon.atomic import atomic_write_text
from medrecon.errors import FormatError
from medrecon.labels import Code, Label

__all__ = [
    "COLOR_CSV_COLUMNS",
    "color_csv_text",
    "ctbl_text",
    "read_color_table",
    "write_color_csv",
    "write_ctbl",
]

_CODED_PARTS = ("Category", "Type", "TypeModifier", "Region", "RegionModifier")

#: Columns of Slicer's CSV colour table, in the order Slicer writes them.
COLOR_CSV_COLUMNS = (
    "LabelValue",
    "Name",
    "Color_R",
    "Color_G",
    "Color_B",
    "Color_A",
    *(
        f"{part}_{field}"
        for part in _CODED_PARTS
        for field in ("CodingScheme", "CodeValue", "CodeMeaning")
    ),
)


def _name(label: Label) -> str:
    # Fields are separated by spaces, so a name may not contain one.
    return "_".join(label.name.split())


def ctbl_text(labels: Sequence[Label]) -> str:
    """The ``.ctbl`` text for ``labels``, with value 0 as transparent background."""
    lines = ["# Color table file written by medrecon", f"# {len(labels) + 1} values"]
    lines.append("0 background 0 0 0 0")
    for label in sorted(labels, key=lambda lab: lab.value):
        r, g, b = label.color
        lines.append(f"{label.value} {_name(label)} {r} {g} {b} 255")
    return "\n".join(lines) + "\n"


def write_ctbl(path: str | os.PathLike[str], labels: Sequence[Label]) -> Path:
    """Write the colour table atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, ctbl_text(labels))
    return path


def _code_cells(code: Code | None) -> list[str]:
    return ["", "", ""] if code is None else [code.scheme, code.value, code.meaning]


def color_csv_text(labels: Sequence[Label]) -> str:
    """Slicer's CSV colour table for ``labels`` (background 0 is left out, as Slicer advises)."""
    out = io.StringIO()
    # Slicer quotes every text cell; VTK's reader cannot take a quote inside a value.
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(COLOR_CSV_COLUMNS)
    for label in sorted(labels, key=lambda lab: lab.value):
        codes = [label.category, label.type, label.type_modifier, None, None]
        cells = [c.replace('"', "'") for code in codes for c in _code_cells(code)]
        writer.writerow([label.value, label.name.replace('"', "'"), *label.color, 255, *cells])
    return out.getvalue()


def write_color_csv(path: str | os.PathLike[str], labels: Sequence[Label]) -> Path:
    """Write Slicer's CSV colour table atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, color_csv_text(labels))
    return path


def _read_csv_table(path: Path, text: str) -> dict[int, str]:
    rows = csv.DictReader(io.StringIO(text))
    if rows.fieldnames is None or "LabelValue" not in rows.fieldnames:
        raise FormatError(f"{path}: a CSV colour table needs a LabelValue column")
    table = {}
    for row in rows:
        try:
            value = int(row["LabelValue"])
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{path}: bad LabelValue {row['LabelValue']!r}") from exc
        table[value] = (row.get("Name") or "").strip()
    return table


def _read_ctbl(path: Path, text: str) -> dict[int, str]:
    table = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            table[int(fields[0])] = fields[1] if len(fields) > 1 else ""
        except ValueError as exc:
            raise FormatError(f"{path}, line {number}: expected 'value name R G B A'") from exc
    return table


def read_color_table(path: str | os.PathLike[str]) -> dict[int, str]:
    """Label value -> name from a Slicer ``.ctbl``/``.txt`` or ``.csv`` colour table.

    Background 0 is dropped when the table names it (Slicer tables often do).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FormatError(f"{path}: cannot read colour table ({exc.strerror})") from exc
    is_csv = path.suffix.lower() == ".csv"
    table = _read_csv_table(path, text) if is_csv else _read_ctbl(path, text)
    table.pop(0, None)
    return table
