"""Known anatomical structures: SNOMED CT codes and display colours for label names.

Label names follow TotalSegmentator's snake_case style (``kidney_left``,
``inferior_vena_cava``). :func:`describe` turns a name and a label value into a
:class:`~medrecon.labels.Label`; names it does not know still get a
stable colour, just no codes.

Where the codes and colours come from (each code was checked against these):

* 3D Slicer ``SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json``:
  codes and ``recommendedDisplayRGBValue`` colours for most entries.
* TotalSegmentator ``resources/totalsegmentator_snomed_mapping.csv``:
  inferior vena cava, portal vein and splenic vein, vertebrae.
* DICOM PS3.16 CID 7603 (Vertebra) and CID 6114 (Vertebra, 51282000);
  CID 12114 (Inferior vena cava, Portal vein).
* SlicerTotalSegmentator ``SegmentationCategoryTypeModifier-TotalSegmentator.term.json``:
  colours of the inferior vena cava and the portal vein.

Every TotalSegmentator class name (its ``total``, ``total_mr``, ``vertebrae_mr``,
``trunk_cavities`` and ``breasts`` tasks) is in ``terminology_totalsegmentator.tsv``,
read on first use: codes from SlicerTotalSegmentator's
``totalsegmentator_snomed_mapping.csv`` (they agree with TotalSegmentator's own
mapping for every name both list); colours from SlicerTotalSegmentator's
``term.json`` where it has the type, else that csv's colour, else TotalSegmentator's
csv (the ``color_source`` column says which). Names both tables hold keep the values
of the table above (the shipped models' labels; a test checks the codes agree).

:func:`describe_labels` describes a foreign model's whole label list: a name neither
table knows gets the generic :data:`GENERIC_TYPE` code and a warning.
"""

from __future__ import annotations

import colorsys
import csv
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from medrecon.labels import Code, Label

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "BODY_SUBSTANCE",
    "GENERIC_TYPE",
    "LEFT",
    "RIGHT",
    "TISSUE",
    "Term",
    "describe",
    "describe_labels",
    "unknown_names_note",
    "known_names",
    "lookup",
    "normalize",
    "unknown_color",
]

ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
TISSUE = Code("85756007", "SCT", "Tissue")
BODY_SUBSTANCE = Code("91720002", "SCT", "Body Substance")
LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")
#: The type given to a name no table knows. SNOMED CT "Anatomical structure" says
#: "a part of the body" without claiming which; with the Anatomical Structure
#: category it is the least specific code a reader of a DICOM SEG will not misread
#: as an organ or a tissue class ("Tissue" would claim a tissue type). The segment
#: label (the model's own name) still says what it is.
GENERIC_TYPE = Code("91723000", "SCT", "Anatomical structure")

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Term:
    """What the table knows about one structure."""

    type: Code
    color: RGB
    category: Code = ANATOMICAL_STRUCTURE
    type_modifier: Code | None = None
    #: Where a morphologically altered structure lies (a kidney cyst: Kidney, Left).
    #: Label has no field for it yet; kept so the table holds the whole mapping.
    region: Code | None = None
    region_modifier: Code | None = None


def _sct(value: str, meaning: str) -> Code:
    return Code(value, "SCT", meaning)


# Unpaired structures: name -> (SNOMED CT code, meaning, colour). Colours are
# Slicer General Anatomy's unless the comment says otherwise.
_UNPAIRED: dict[str, tuple[str, str, RGB]] = {
    "liver": ("10200004", "Liver", (221, 130, 101)),
    "spleen": ("78961009", "Spleen", (157, 108, 162)),
    "stomach": ("69695003", "Stomach", (216, 132, 105)),
    "gallbladder": ("28231008", "Gallbladder", (139, 150, 98)),
    "pancreas": ("15776009", "Pancreas", (249, 180, 111)),
    "aorta": ("15825003", "Aorta", (224, 97, 76)),
    # Colour: SlicerTotalSegmentator's terminology (Slicer's "vein" blue).
    "inferior_vena_cava": ("64131007", "Inferior vena cava", (0, 151, 206)),
    # Code: TotalSegmentator's mapping (one concept for the combined label);
    # colour: SlicerTotalSegmentator's portal vein.
    "portal_vein_and_splenic_vein": ("110765007", "Portal vein and splenic vein", (0, 151, 206)),
    "portal_vein": ("32764006", "Portal vein", (0, 151, 206)),
    "urinary_bladder": ("89837001", "Urinary bladder", (222, 154, 132)),
    "esophagus": ("32849002", "Esophagus", (211, 171, 143)),
    "duodenum": ("38848004", "Duodenum", (255, 253, 229)),
    "small_bowel": ("30315005", "Small intestine", (205, 167, 142)),
    "colon": ("71854001", "Colon", (204, 168, 143)),
    "heart": ("80891009", "Heart", (206, 110, 84)),
    "prostate": ("41216001", "Prostate", (230, 158, 140)),
    "spinal_cord": ("2748008", "Spinal cord", (244, 214, 49)),
    "brain": ("12738006", "Brain", (250, 250, 225)),
    "trachea": ("44567001", "Trachea", (182, 228, 255)),
    # Colour: Slicer's thoracic spine entry (Slicer has no single-vertebra type).
    "vertebrae": ("51282000", "Vertebra", (226, 202, 134)),
}

# Paired structures: the unsided name plus ``_left``/``_right`` with a laterality
# modifier. Slicer gives both sides the same colour.
_PAIRED: dict[str, tuple[str, str, RGB]] = {
    "kidney": ("64033007", "Kidney", (185, 102, 83)),
    "adrenal_gland": ("23451007", "Adrenal gland", (249, 186, 150)),
    "lung": ("39607008", "Lung", (197, 165, 145)),
}

# Tissues and body substances (Slicer's "Tissue" / "Body Substance" categories).
_OTHER: dict[str, tuple[Code, str, str, RGB]] = {
    "muscle": (TISSUE, "71616004", "Muscle", (192, 104, 88)),
    "fat": (TISSUE, "248300009", "Body fat", (230, 220, 70)),
    "bone": (TISSUE, "272673000", "Bone", (241, 214, 145)),
    "urine": (BODY_SUBSTANCE, "78014005", "Urine", (214, 230, 130)),
    "bile": (BODY_SUBSTANCE, "70150004", "Bile", (0, 145, 30)),
}

# Single vertebrae (DICOM CID 7603, same codes as TotalSegmentator's mapping).
# Colours: Slicer's cervical / thoracic / lumbar spine entries.
_VERTEBRAE: dict[str, str] = {
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002",
    "C5": "36978003", "C6": "36054005", "C7": "87391001",
    "T1": "64864005", "T2": "53733008", "T3": "1626008", "T4": "73071006",
    "T5": "56401006", "T6": "45296009", "T7": "62487009", "T8": "11068009",
    "T9": "82687006", "T10": "7610001", "T11": "12989004", "T12": "23215003",
    "L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002",
    "L5": "49668003",
}  # fmt: skip
_SPINE_COLORS: dict[str, RGB] = {"C": (255, 255, 207), "T": (226, 202, 134), "L": (212, 188, 102)}

# Other spellings seen in datasets and bundles -> the table's name.
_ALIASES: dict[str, str] = {
    "bladder": "urinary_bladder",
    "gall_bladder": "gallbladder",
    "ivc": "inferior_vena_cava",
    "postcava": "inferior_vena_cava",
    "vena_cava_inferior": "inferior_vena_cava",
    "portal_and_splenic_vein": "portal_vein_and_splenic_vein",
    "small_intestine": "small_bowel",
    "oesophagus": "esophagus",
    "vertebra": "vertebrae",
    "spinalcord": "spinal_cord",
}


def _build_table() -> dict[str, Term]:
    table: dict[str, Term] = {}
    for name, (value, meaning, color) in _UNPAIRED.items():
        table[name] = Term(_sct(value, meaning), color)
    for name, (value, meaning, color) in _PAIRED.items():
        table[name] = Term(_sct(value, meaning), color)
        table[f"{name}_left"] = Term(_sct(value, meaning), color, type_modifier=LEFT)
        table[f"{name}_right"] = Term(_sct(value, meaning), color, type_modifier=RIGHT)
    for name, (category, value, meaning, color) in _OTHER.items():
        table[name] = Term(_sct(value, meaning), color, category=category)
    for level, value in _VERTEBRAE.items():
        table[f"vertebrae_{level.lower()}"] = Term(
            _sct(value, f"{level} vertebra"), _SPINE_COLORS[level[0]]
        )
    return table


_TABLE = _build_table()

_FOREIGN_FILE = "terminology_totalsegmentator.tsv"


def _code(row: dict[str, str], prefix: str) -> Code | None:
    value = row[f"{prefix}_value"]
    return Code(value, row[f"{prefix}_scheme"], row[f"{prefix}_meaning"]) if value else None


@functools.cache
def _foreign_table() -> dict[str, Term]:
    """TotalSegmentator's names -> terms, read from the package's TSV on first use
    (import stays cheap for the many runs that never meet a foreign model)."""
    text = resources.files("medrecon.labels").joinpath(_FOREIGN_FILE).read_text("utf-8")
    table: dict[str, Term] = {}
    for row in csv.DictReader(text.splitlines(), delimiter="\t"):
        table[normalize(row["name"])] = Term(
            type=_code(row, "type"),  # type: ignore[arg-type]  # every row has a type
            color=(int(row["r"]), int(row["g"]), int(row["b"])),
            category=_code(row, "category") or ANATOMICAL_STRUCTURE,
            type_modifier=_code(row, "modifier"),
            region=_code(row, "region"),
            region_modifier=_code(row, "region_modifier"),
        )
    return table


# Distinct, mid-saturation colours for names the table does not know; chosen to
# stay readable on both dark and light backgrounds.
_PALETTE: tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip

_SEPARATORS = re.compile(r"[\s\-./]+")
_SIDE_PREFIX = re.compile(r"^(left|right)_(.+)$")
_SIDE_SHORT = re.compile(r"^(.+)_(l|r)$")


def normalize(name: str) -> str:
    """The table key for ``name``: lower case, separators -> ``_``, side as a suffix.

    ``"Left Kidney"``, ``"left-kidney"``, ``"kidney_L"`` all become ``"kidney_left"``;
    known aliases (``"bladder"``, ``"IVC"``) map to the table's spelling.
    """
    key = _SEPARATORS.sub("_", name.strip().lower())
    key = re.sub(r"_+", "_", key).strip("_")
    key = _ALIASES.get(key, key)
    side = _SIDE_PREFIX.match(key)
    if side:
        key = f"{_ALIASES.get(side.group(2), side.group(2))}_{side.group(1)}"
    short = _SIDE_SHORT.match(key)
    if short:
        stem = _ALIASES.get(short.group(1), short.group(1))
        key = f"{stem}_{'left' if short.group(2) == 'l' else 'right'}"
    return key


def lookup(name: str) -> Term | None:
    """The table entry for ``name`` (after :func:`normalize`), or None."""
    key = normalize(name)
    return _TABLE.get(key) or _foreign_table().get(key)


def known_names() -> tuple[str, ...]:
    """Every name the tables hold (normalised), sorted."""
    return tuple(sorted(set(_TABLE) | set(_foreign_table())))


def unknown_color(value: int) -> RGB:
    """A colour for an unknown structure, picked by its label value.

    Values 1..20 get the fixed palette, so the labels of one map never share a
    colour; later values step the hue by the golden ratio, which keeps
    neighbouring values far apart on the colour wheel.
    """
    if value < 1:
        raise ValueError(f"label values start at 1 (0 is background), got {value}")
    if value <= len(_PALETTE):
        return _PALETTE[value - 1]
    hue = (value * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.65, 0.9)
    return (round(red * 255), round(green * 255), round(blue * 255))


def describe(name: str, value: int, *, generic: bool = False) -> Label:
    """A :class:`Label` for ``name`` at ``value``: known codes and colour when the
    table has the structure, else a palette colour and no codes (with ``generic``:
    the :data:`GENERIC_TYPE` code under Anatomical Structure).

    The label keeps ``name`` as given (stripped): normalisation is for matching only.
    """
    display = name.strip()
    if not display:
        raise ValueError(f"label {value} has an empty name")
    term = lookup(display)
    if term is None:
        if generic:
            return Label(
                value=value,
                name=display,
                color=unknown_color(value),
                category=ANATOMICAL_STRUCTURE,
                type=GENERIC_TYPE,
            )
        return Label(value=value, name=display, color=unknown_color(value))
    return Label(
        value=value,
        name=display,
        color=term.color,
        category=term.category,
        type=term.type,
        type_modifier=term.type_modifier,
    )


def describe_labels(
    labels: Iterable[tuple[int, str]], *, source: str = "the model"
) -> tuple[tuple[Label, ...], list[str]]:
    """Labels for a foreign model's ``(value, name)`` list, and warnings to surface.

    Every label gets codes: a name no table knows is coded as :data:`GENERIC_TYPE`
    and named in a warning (``source`` says whose label it is), so a DICOM SEG of it
    is valid but says only "anatomical structure". Never raises for an unknown name.
    """
    described = tuple(describe(name, int(value), generic=True) for value, name in labels)
    return described, list(unknown_names_note(described, source))


def unknown_names_note(labels: Iterable[Label], source: str) -> tuple[str, ...]:
    """The warning for labels no table knows (coded generically), or nothing."""
    unknown = [f"{label.value} {label.name!r}" for label in labels if lookup(label.name) is None]
    if not unknown:
        return ()
    return (
        f"{source}: no SNOMED CT code known for label(s) {', '.join(unknown)}; coded as "
        f"the generic '{GENERIC_TYPE.meaning}' (SCT {GENERIC_TYPE.value}) with a "
        "palette colour. The segment names are kept; check them before sharing a DICOM SEG.",
    )
