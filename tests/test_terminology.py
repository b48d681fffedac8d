"""Terminology table: verified SNOMED CT codes, Slicer colours, laterality, name matching."""

from __future__ import annotations

import pytest

from medrecon.labels import Label, terminology
from medrecon.labels.terminology import (
    ANATOMICAL_STRUCTURE,
    BODY_SUBSTANCE,
    GENERIC_TYPE,
    LEFT,
    RIGHT,
    TISSUE,
    describe,
    describe_labels,
    known_names,
    lookup,
    normalize,
    unknown_color,
)

# name -> (SNOMED CT code, colour); codes and colours as checked in the sources
# named in medrecon/labels/terminology.py.
KNOWN = {
    "liver": ("10200004", (221, 130, 101)),
    "spleen": ("78961009", (157, 108, 162)),
    "stomach": ("69695003", (216, 132, 105)),
    "gallbladder": ("28231008", (139, 150, 98)),
    "pancreas": ("15776009", (249, 180, 111)),
    "aorta": ("15825003", (224, 97, 76)),
    "inferior_vena_cava": ("64131007", (0, 151, 206)),
    "portal_vein_and_splenic_vein": ("110765007", (0, 151, 206)),
    "urinary_bladder": ("89837001", (222, 154, 132)),
    "esophagus": ("32849002", (211, 171, 143)),
    "duodenum": ("38848004", (255, 253, 229)),
    "small_bowel": ("30315005", (205, 167, 142)),
    "colon": ("71854001", (204, 168, 143)),
    "heart": ("80891009", (206, 110, 84)),
    "prostate": ("41216001", (230, 158, 140)),
    "spinal_cord": ("2748008", (244, 214, 49)),
    "brain": ("12738006", (250, 250, 225)),
    "vertebrae": ("51282000", (226, 202, 134)),
    "kidney": ("64033007", (185, 102, 83)),
    "lung": ("39607008", (197, 165, 145)),
    "adrenal_gland": ("23451007", (249, 186, 150)),
}


@pytest.mark.parametrize(("name", "expected"), KNOWN.items())
def test_known_structures(name: str, expected: tuple[str, tuple[int, int, int]]) -> None:
    label = describe(name, 5)
    assert (label.type.value, label.type.scheme, label.color) == (expected[0], "SCT", expected[1])
    assert label.category == ANATOMICAL_STRUCTURE
    assert label.type_modifier is None
    assert (label.value, label.name) == (5, name)


@pytest.mark.parametrize("organ", ["kidney", "lung", "adrenal_gland"])
def test_left_and_right(organ: str) -> None:
    left, right, plain = (describe(f"{organ}{s}", 1) for s in ("_left", "_right", ""))
    assert (left.type_modifier, right.type_modifier) == (LEFT, RIGHT)
    assert left.type == right.type == plain.type
    assert LEFT.value == "7771000" and RIGHT.value == "24028007"


def test_category_codes() -> None:
    assert (ANATOMICAL_STRUCTURE.value, TISSUE.value, BODY_SUBSTANCE.value) == (
        "123037004",
        "85756007",
        "91720002",
    )
    assert describe("muscle", 1).category == TISSUE
    assert describe("urine", 1).category == BODY_SUBSTANCE


def test_single_vertebrae() -> None:
    assert describe("vertebrae_L1", 1).type.value == "66794005"
    assert describe("vertebrae_T12", 1).type.meaning == "T12 vertebra"
    assert describe("vertebrae_C1", 1).color != describe("vertebrae_L5", 1).color


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Liver", "liver"),
        ("  Spleen ", "spleen"),
        ("Left Kidney", "kidney_left"),
        ("left-kidney", "kidney_left"),
        ("kidney_L", "kidney_left"),
        ("right_adrenal_gland", "adrenal_gland_right"),
        ("Right Lung", "lung_right"),
        ("Inferior Vena Cava", "inferior_vena_cava"),
        ("IVC", "inferior_vena_cava"),
        ("Gall Bladder", "gallbladder"),
        ("bladder", "urinary_bladder"),
        ("small intestine", "small_bowel"),
        ("portal-vein-and-splenic-vein", "portal_vein_and_splenic_vein"),
    ],
)
def test_normalisation(raw: str, key: str) -> None:
    assert normalize(raw) == key
    assert lookup(raw) == lookup(key) is not None


def test_name_is_kept_as_given() -> None:
    label = describe(" Left Kidney ", 2)
    assert label.name == "Left Kidney"
    assert label.type_modifier == LEFT


def test_unknown_names_get_distinct_deterministic_colours() -> None:
    labels = [describe(f"structure {i}", i) for i in range(1, 41)]
    assert all(isinstance(label, Label) for label in labels)
    assert all(label.type is None and label.category is None for label in labels)
    colours = [label.color for label in labels]
    assert len(set(colours)) == len(colours)
    assert all(0 <= c <= 255 for colour in colours for c in colour)
    assert describe("structure 7", 7) == labels[6]  # same input, same label
    assert unknown_color(33) == unknown_color(33)
    assert lookup("tumour_of_the_left_elbow") is None


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="empty name"):
        describe("  ", 1)
    with pytest.raises(ValueError, match="start at 1"):
        unknown_color(0)


def test_table_covers_abdominal_structures() -> None:
    names = set(known_names())
    required = set(KNOWN) | {"kidney_left", "kidney_right", "lung_left", "lung_right"}
    assert required <= names
    assert {"adrenal_gland_left", "adrenal_gland_right"} <= names


# --- foreign models: TotalSegmentator's names and the generic fallback ---------------------


# (name, type code, modifier code or None, colour) read off SlicerTotalSegmentator's
# totalsegmentator_snomed_mapping.csv and term.json.
TOTALSEG_FACTS = [
    ("rib_left_1", "48535007", "7771000", (253, 232, 158)),
    ("sacrum", "54735007", None, (212, 188, 102)),
    ("autochthon_left", "244849004", "7771000", None),
    ("lung_middle_lobe_right", "72481006", None, (202, 164, 140)),
    ("iliac_vena_left", "46027005", "7771000", None),
    ("vertebrae_S1", "65985001", None, None),
    ("intervertebral_discs", "360499006", None, None),
    ("mediastinum", "72410000", None, None),
]


@pytest.mark.parametrize(("name", "type_value", "modifier", "color"), TOTALSEG_FACTS)
def test_totalsegmentator_names_are_coded(name, type_value, modifier, color) -> None:
    label = describe(name, 3)
    assert label.type.value == type_value and label.type.scheme == "SCT"
    assert (label.type_modifier.value if label.type_modifier else None) == modifier
    if color is not None:
        assert label.color == color


def test_kidney_cyst_is_an_altered_structure_in_the_kidney() -> None:
    term = lookup("kidney_cyst_left")
    assert term.category.value == "49755003" and term.type.meaning == "Cyst"
    assert (term.region.value, term.region_modifier) == ("64033007", LEFT)


def test_hand_table_wins_and_agrees_on_codes() -> None:
    """Names in both tables keep the hand table's values; the codes are the same."""
    foreign = terminology._foreign_table()
    shared = set(foreign) & set(terminology._TABLE)
    assert {"liver", "kidney_left", "vertebrae_l1", "lung_right"} <= shared
    for key in shared:
        mine, theirs = terminology._TABLE[key], foreign[key]
        assert (mine.category, mine.type.value, mine.type_modifier) == (
            theirs.category,
            theirs.type.value,
            theirs.type_modifier,
        ), key
        assert lookup(key) is mine
    assert describe("inferior_vena_cava", 1).color == (0, 151, 206)  # not the csv's colour


def test_describe_labels_codes_every_name_and_warns_about_unknown_ones() -> None:
    labels, warnings = describe_labels(
        [(1, "liver"), (2, "tumour_of_the_left_elbow"), (3, "rib_right_4")], source="model X"
    )
    assert [label.type.value for label in labels] == ["10200004", GENERIC_TYPE.value, "25523003"]
    assert (
        labels[1].category == ANATOMICAL_STRUCTURE and labels[1].name == "tumour_of_the_left_elbow"
    )
    assert len(warnings) == 1
    assert "model X" in warnings[0] and "2 'tumour_of_the_left_elbow'" in warnings[0]
    assert "liver" not in warnings[0]
    assert describe_labels([(1, "liver")]) == ((describe("liver", 1),), [])
    # describe() without generic keeps the old contract: no codes for unknown names
    assert describe("tumour_of_the_left_elbow", 2).type is None
    assert terminology.Code("91723000", "SCT", "Anatomical structure") == GENERIC_TYPE


def test_known_names_include_the_foreign_table() -> None:
    names = set(known_names())
    assert {"rib_left_12", "costal_cartilages", "vertebrae_s1", "breast"} <= names
