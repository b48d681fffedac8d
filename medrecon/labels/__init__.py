"""Labels, a core type: one structure of a label map, with its codes and colour.

Every layer speaks of labels (pipelines declare them, engines find them, every
exporter writes them), so the type lives here, beside :mod:`medrecon.volume`,
and depends on nothing else of medrecon. What the names mean lives beside it:
:mod:`medrecon.labels.terminology` (names -> SNOMED CT codes and colours) and
:mod:`medrecon.labels.terminology_entry` (codes <-> Slicer's TerminologyEntry).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Code", "Label"]


@dataclass(frozen=True)
class Code:
    """A coded concept, e.g. SNOMED CT ``("10200004", "SCT", "Liver")``."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class Label:
    """One structure: its value in the label map, name, display colour and codes.

    The network's output channel for a label is its value (channel 0 is background).
    """

    value: int
    name: str
    color: tuple[int, int, int]
    category: Code | None = None
    type: Code | None = None
    type_modifier: Code | None = None
    #: Volume range (mL) of the whole structure in adults; results outside it are flagged.
    expected_ml: tuple[float, float] | None = None
