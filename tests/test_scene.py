"""scene.mrml and .mrb: XML, relative paths, node links and colours (no Slicer needed)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from slicer_outputs import build_outdir, real_case

from medrecon.errors import InputError
from medrecon.export.scene import MRML_VERSION, scene_files, write_mrb, write_scene
from medrecon.labels.terminology import describe

ORGANS = ["liver", "spleen", "aorta"]


@pytest.fixture(scope="module")
def outdir(shared_data, tmp_path_factory) -> Path:
    image, labels, table = real_case(shared_data, "ct-abdomen", ORGANS)
    return build_outdir(tmp_path_factory.mktemp("run") / "out", image, labels, table, ORGANS)


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    return {node.get("id"): node for node in root}


def _refs(node: ET.Element) -> dict[str, str]:
    pairs = [p.split(":", 1) for p in node.get("references", "").split(";") if p]
    return dict(pairs)


def test_scene_links_every_node_to_its_files(outdir):
    root = ET.parse(outdir / "scene.mrml").getroot()
    assert root.tag == "MRML"
    assert root.get("version") == MRML_VERSION
    nodes = _nodes(root)
    data = {n.get("name"): n for n in root if n.get("references")}
    assert {"image", "labels", "segmentation", *ORGANS} <= set(data)
    for node in data.values():
        for role, target in _refs(node).items():
            assert target in nodes, f"{node.get('name')} {role} -> missing {target}"
        storage = nodes[_refs(node)["storage"]]
        file_name = storage.get("fileName")
        assert not Path(file_name).is_absolute()
        assert (outdir / file_name).is_file()
    assert data["image"].tag == "Volume"
    assert data["labels"].tag == "LabelMapVolume"
    assert data["segmentation"].tag == "Segmentation"


def test_colours_names_and_views(outdir):
    root = ET.parse(outdir / "scene.mrml").getroot()
    nodes = _nodes(root)
    for name in ORGANS:
        model = next(n for n in root.iter("Model") if n.get("name") == name)
        display = nodes[_refs(model)["display"]]
        expected = describe(name, 1).color
        rgb = [round(float(c) * 255) for c in display.get("color").split()]
        assert rgb == list(expected)
        assert nodes[_refs(model)["storage"]].get("coordinateSystem") == "LPS"
    label_display = nodes[_refs(next(root.iter("LabelMapVolume")))["display"]]
    color_table = nodes[label_display.get("colorNodeID")]
    assert nodes[_refs(color_table)["storage"]].get("fileName") == "labels.labels.csv"
    # With meshes present the segmentation is drawn in slice views only, not twice in 3D.
    seg_display = nodes[_refs(next(root.iter("Segmentation")))["display"]]
    assert (seg_display.get("visibility2D"), seg_display.get("visibility3D")) == ("true", "false")
    image_id = next(root.iter("Volume")).get("id")
    views = {n.get("layoutName"): n.get("backgroundVolumeID") for n in root.iter("SliceComposite")}
    assert views == {"Red": image_id, "Yellow": image_id, "Green": image_id}


def test_absolute_paths_are_written_relative(outdir, tmp_path):
    scene = write_scene(
        outdir / "abs.mrml",
        segmentation=outdir / "segmentation.seg.nrrd",
        meshes=[(outdir / "meshes" / "liver.stl", describe("liver", 5))],
    )
    assert [p.relative_to(outdir).as_posix() for p in scene_files(scene)] == [
        "segmentation.seg.nrrd",
        "meshes/liver.stl",
    ]
    root = ET.parse(scene).getroot()
    seg_display = next(root.iter("SegmentationDisplay"))
    assert seg_display.get("visibility3D") == "false"
    only_seg = write_scene(outdir / "seg-only.mrml", segmentation="segmentation.seg.nrrd")
    assert next(ET.parse(only_seg).getroot().iter("SegmentationDisplay")).get("visibility3D") == (
        "true"
    )
    assert not list(ET.parse(only_seg).getroot().iter("SliceComposite"))  # no image to show


def test_bad_scenes_are_refused(outdir):
    with pytest.raises(InputError, match=r"image file .*missing\.nii\.gz does not exist"):
        write_scene(outdir / "bad.mrml", image="missing.nii.gz")
    with pytest.raises(InputError, match="colour table needs the label map"):
        write_scene(outdir / "bad.mrml", image="image.nii.gz", color_table="labels.labels.csv")
    with pytest.raises(InputError, match="nothing to show"):
        write_scene(outdir / "bad.mrml")
    assert not (outdir / "bad.mrml").exists()


def test_mrb_holds_the_scene_folder_as_slicer_lays_it_out(outdir, tmp_path):
    mrb = write_mrb(outdir, tmp_path / "case-001.mrb")
    with zipfile.ZipFile(mrb) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "unzipped")
    data = ["image.nii.gz", "labels.nii.gz", "labels.labels.csv", "segmentation.seg.nrrd"]
    data += [f"meshes/{n}.stl" for n in ORGANS]
    # As Slicer writes bundles: <name>/, <name>/<name>.mrml, <name>/Data/...
    assert names[:2] == ["case-001/", "case-001/case-001.mrml"]
    assert sorted(names[2:]) == sorted(f"case-001/Data/{n}" for n in data)  # no expected.json
    unpacked = tmp_path / "unzipped" / "case-001" / "case-001.mrml"
    files = scene_files(unpacked)
    assert len(files) == len(data) and all(p.is_file() for p in files)
    for name in data:  # the same bytes as in the output folder
        assert (tmp_path / "unzipped/case-001/Data" / name).read_bytes() == (
            outdir / name
        ).read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(InputError, match="write the scene first"):
        write_mrb(tmp_path, tmp_path / "x.mrb")
