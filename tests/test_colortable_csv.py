"""Slicer's CSV colour table and reading .ctbl/.csv tables back by label value."""

from __future__ import annotations

import csv

import pytest

from medrecon.errors import FormatError
from medrecon.export.colortable import (
    COLOR_CSV_COLUMNS,
    read_color_table,
    write_color_csv,
    write_ctbl,
)
from medrecon.labels import Label
from medrecon.labels.terminology import describe

# The header line exactly as Slicer 5.13's vtkMRMLColorTableStorageNode writes it.
SLICER_HEADER = (
    '"LabelValue","Name","Color_R","Color_G","Color_B","Color_A",'
    '"Category_CodingScheme","Category_CodeValue","Category_CodeMeaning",'
    '"Type_CodingScheme","Type_CodeValue","Type_CodeMeaning",'
    '"TypeModifier_CodingScheme","TypeModifier_CodeValue","TypeModifier_CodeMeaning",'
    '"Region_CodingScheme","Region_CodeValue","Region_CodeMeaning",'
    '"RegionModifier_CodingScheme","RegionModifier_CodeValue","RegionModifier_CodeMeaning"'
)


def _table() -> list[Label]:
    return [
        describe("kidney_left", 3),
        describe("liver", 1),
        Label(12, "lesion, cystic", (1, 2, 3)),  # no codes; a comma in the name
    ]


def test_csv_matches_slicers_layout(tmp_path):
    path = write_color_csv(tmp_path / "labels.labels.csv", _table())
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == SLICER_HEADER
    assert lines[1] == (
        '1,"liver",221,130,101,255,"SCT","123037004","Anatomical Structure",'
        '"SCT","10200004","Liver","","","","","","","","",""'
    )
    rows = list(csv.DictReader(lines))
    assert [int(r["LabelValue"]) for r in rows] == [1, 3, 12]  # sorted, no background row
    kidney = rows[1]
    assert (kidney["TypeModifier_CodeValue"], kidney["TypeModifier_CodeMeaning"]) == (
        "7771000",
        "Left",
    )
    assert rows[2]["Name"] == "lesion, cystic"
    assert rows[2]["Category_CodeValue"] == ""
    assert tuple(rows[0]) == COLOR_CSV_COLUMNS


def test_read_back_csv_and_ctbl(tmp_path):
    expected = {1: "liver", 3: "kidney_left", 12: "lesion, cystic"}
    assert read_color_table(write_color_csv(tmp_path / "t.csv", _table())) == expected
    # .ctbl cannot hold spaces in names: they become underscores there.
    ctbl = read_color_table(write_ctbl(tmp_path / "t.ctbl", _table()))
    assert ctbl == {1: "liver", 3: "kidney_left", 12: "lesion,_cystic"}


def test_reads_a_hand_written_ctbl_with_background(tmp_path):
    path = tmp_path / "Segmentation-label_ColorTable.ctbl"
    path.write_text(
        "# Color table file C:/x.ctbl\n# 3 values\n0 Background 0 0 0 0\n"
        "1 artery 216 101 79 255\n\n2 bone 241 214 145 255\n"
    )
    assert read_color_table(path) == {1: "artery", 2: "bone"}


def test_bad_tables_say_where(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("Value,Name\n1,liver\n")
    with pytest.raises(FormatError, match="LabelValue"):
        read_color_table(bad_csv)
    bad_ctbl = tmp_path / "bad.ctbl"
    bad_ctbl.write_text("# header\nliver 1 2 3 4\n")
    with pytest.raises(FormatError, match=r"bad\.ctbl, line 2"):
        read_color_table(bad_ctbl)
    with pytest.raises(FormatError, match="cannot read"):
        read_color_table(tmp_path / "missing.csv")
