"""Slicer colour tables for a label map.

``.ctbl`` is Slicer's plain colour-table format: one ``value name R G B A``
line per label (names without spaces), comment lines starting with ``#``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from medrecon.atomic import atomic_write_text
from medrecon.pipeline.config import Label

__all__ = ["ctbl_text", "write_ctbl"]


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
