"""Slicer's ``TerminologyEntry`` segment tag: a label's codes as one string.

The string has seven ``~``-separated parts: terminology context name, category,
type, type modifier, anatomic context name, anatomic region and anatomic region
modifier. Each coded part is ``scheme^value^meaning`` (``^^`` when empty), e.g.::

    Segmentation category and type - 3D Slicer General Anatomy list
    ~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^
    ~Anatomic codes - DICOM master list~^^~^^

(one line in the file). This is the form Slicer 5 writes in ``.seg.nrrd`` files
(see the samples shipped with slicerio and Slicer's segmentations developer guide).
"""

from __future__ import annotations

from medrecon.labels import Code, Label
from medrecon.labels.terminology import TISSUE

__all__ = [
    "ANATOMIC_CONTEXT",
    "TERMINOLOGY_CONTEXT",
    "label_codes_from_entry",
    "terminology_entry",
]

#: Context names Slicer uses for its General Anatomy list.
TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

_PARTS = 7


def _code_text(code: Code | None) -> str:
    if code is None:
        return "^^"
    # '~', '^' and '|' delimit the string and its tag list; meanings never need them.
    fields = (code.scheme, code.value, code.meaning)
    return "^".join(f.replace("~", " ").replace("^", " ").replace("|", " ") for f in fields)


def terminology_entry(label: Label) -> str:
    """The TerminologyEntry string for ``label``.

    Slicer needs both a category and a type, so a label without a type code
    gets Slicer's own default for a new segment, SCT 85756007 "Tissue" for both
    (as medrecon's DICOM SEG does); its name and colour still say what it is.
    """
    typed = label.type is not None and label.category is not None
    parts = [
        TERMINOLOGY_CONTEXT,
        _code_text(label.category if typed else TISSUE),
        _code_text(label.type if typed else TISSUE),
        _code_text(label.type_modifier if typed else None),
        ANATOMIC_CONTEXT,
        "^^",
        "^^",
    ]
    return "~".join(parts)


def _parse_code(text: str) -> Code | None:
    fields = text.split("^")
    if len(fields) != 3 or not fields[1]:
        return None
    scheme, value, meaning = fields
    return Code(value=value, scheme=scheme, meaning=meaning)


def label_codes_from_entry(entry: str) -> tuple[Code | None, Code | None, Code | None]:
    """``(category, type, type_modifier)`` from a TerminologyEntry string.

    Tolerant: missing or malformed parts give None rather than an error, since
    the codes only describe a segment and never change its voxels.
    """
    parts = entry.split("~")
    if len(parts) < 3:
        return None, None, None
    parts += [""] * (_PARTS - len(parts))
    return _parse_code(parts[1]), _parse_code(parts[2]), _parse_code(parts[3])
