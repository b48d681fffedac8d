"""Open a medrecon output folder with 3D Slicer's own loading code and check it.

Runs under the Python of a separate virtual environment holding PyPI
``slicer-core`` (it pins its own VTK), never under medrecon's::

    python check_outputs.py OUTDIR [--expected expected.json]

What Slicer reads here, with its own classes:

* ``scene.mrml`` through ``vtkMRMLScene`` (every storage node reads its file);
* ``segmentation.seg.nrrd`` through ``vtkSlicerSegmentationsModuleLogic``;
* ``labels.nii.gz`` through ``vtkMRMLVolumeArchetypeStorageNode`` with its
  colour table (``labels.labels.csv`` or ``labels.ctbl``) through
  ``vtkMRMLColorTableStorageNode``, and as a segmentation coloured by it;
* each mesh through ``vtkMRMLModelStorageNode``.

Checks: the scene's nodes all loaded; names and colours agree across colour
table, segmentation, scene and meshes (and with ``--expected``: the label
table it lists as ``{"labels": [{"value", "name", "color"}]}``); every mesh's
RAS bounds lie within one voxel of its label's voxel bounds. Prints a JSON
summary; exits 1 if any check failed, 2 if the folder cannot be checked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtkmodules.util import numpy_support

MESH_SUFFIXES = (".stl", ".vtk", ".vtp", ".ply", ".obj")

# VTK and Slicer messages go to stderr, so stdout holds only the JSON summary.
vtk.vtkOutputWindow.GetInstance().SetDisplayModeToAlwaysStdErr()


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def expect(self, ok: bool, message: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(message)
        return ok


def rgb255(values) -> tuple[int, int, int]:
    return tuple(round(float(v) * 255) for v in list(values)[:3])


def new_scene() -> tuple[object, object]:
    scene = slicer.vtkMRMLScene()
    # Module logics register their node classes (segmentations, colours) with the scene.
    seg_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    seg_logic.SetMRMLScene(scene)
    return scene, seg_logic


def read_color_table(scene, path: Path, checks: Checks) -> tuple[dict, object]:
    """Label value -> (name, RGB 0-255) as Slicer's colour table reader sees it."""
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode")
    storage = scene.AddNewNodeByClass("vtkMRMLColorTableStorageNode")
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not checks.expect(storage.ReadData(node) == 1, f"colour table {path.name}: not read"):
        return {}, None
    table = {}
    for value in range(1, node.GetNumberOfColors()):
        name = node.GetColorName(value)
        if name and name != "(none)":
            table[value] = (name, rgb255(node.GetLookupTable().GetTableValue(value)))
    return table, node


def segments_of(segmentation_node) -> dict[str, tuple[int, int, int]]:
    seg = segmentation_node.GetSegmentation()
    return {
        seg.GetNthSegment(i).GetName(): rgb255(seg.GetNthSegment(i).GetColor())
        for i in range(seg.GetNumberOfSegments())
    }


def segment_codes(segment) -> dict[str, list[str]] | None:
    """Category, type and modifier as Slicer's terminology parser reads the segment's tag."""
    entry = vtk.reference("")
    if not segment.GetTag("TerminologyEntry", entry) or not str(entry):
        return None
    parsed = slicer.vtkSlicerTerminologyEntry()
    if not slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(str(entry), parsed):
        return {}
    parts = {
        "category": parsed.GetCategoryObject(),
        "type": parsed.GetTypeObject(),
        "type_modifier": parsed.GetTypeModifierObject(),
    }
    return {
        key: [code.GetCodingSchemeDesignator(), code.GetCodeValue(), code.GetCodeMeaning()]
        for key, code in parts.items()
        if code.GetCodeValue()
    }


def check_terminology(where: str, segment, codes: dict, checks: Checks) -> None:
    found = segment_codes(segment)
    checks.expect(found != {}, f"{where}: Slicer cannot parse {segment.GetName()}'s terminology")
    wanted = codes.get(segment.GetName())
    if wanted is not None:
        checks.expect(
            (found or None) == (wanted or None),
            f"{where}: segment {segment.GetName()} coded {found}, expected {wanted}",
        )


def check_segmentation(
    seg_logic, path: Path, table: dict, affine, codes: dict, checks: Checks
) -> dict:
    node = seg_logic.LoadSegmentationFromFile(str(path), False)
    if not checks.expect(node is not None, f"{path.name}: Slicer could not load it"):
        return {}
    check_affine(path.name, segmentation_affine(node), affine, checks)
    seg = node.GetSegmentation()
    checks.expect(
        seg.ContainsRepresentation("Closed surface"),
        f"{path.name}: Slicer built no closed surface on load",
    )
    segments = segments_of(node)
    expected = {name: color for name, color in table.values()}
    checks.expect(segments == expected, f"{path.name}: segments {segments} != {expected}")
    for i in range(seg.GetNumberOfSegments()):
        check_terminology(path.name, seg.GetNthSegment(i), codes, checks)
    return segments


def read_label_map(scene, path: Path, color_node, checks: Checks):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not checks.expect(storage.ReadData(node) == 1, f"{path.name}: not read as a label map"):
        return None
    node.CreateDefaultDisplayNodes()
    if color_node is not None:
        node.GetDisplayNode().SetAndObserveColorNodeID(color_node.GetID())
    return node


def label_voxels(node) -> tuple[np.ndarray, np.ndarray]:
    """The label array as (i, j, k) and the voxel->RAS matrix Slicer derived."""
    image = node.GetImageData()
    dims = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    array = flat.reshape(dims[2], dims[1], dims[0]).transpose(2, 1, 0)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return array, matrix_array(matrix)


def matrix_array(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def check_affine(what: str, found: np.ndarray, expected: np.ndarray | None, checks) -> None:
    if expected is None:
        return
    error = float(np.abs(found - expected).max())
    checks.expect(
        error < 1e-3,
        f"{what}: Slicer puts voxels at {found.round(4).tolist()}, "
        f"expected {expected.round(4).tolist()}",
    )


def segmentation_affine(node) -> np.ndarray | None:
    seg = node.GetSegmentation()
    if seg.GetNumberOfSegments() == 0:
        return None
    image = seg.GetNthSegment(0).GetRepresentation("Binary labelmap")
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return matrix_array(matrix)


def check_label_map_colors(node, table: dict, checks: Checks) -> None:
    array, _ = label_voxels(node)
    present = {int(v) for v in np.unique(array) if v}
    missing = sorted(present - set(table))
    checks.expect(not missing, f"labels.nii.gz: values {missing} have no colour table entry")
    color_node = node.GetDisplayNode().GetColorNode()
    for value, (name, color) in table.items():
        checks.expect(
            color_node.GetColorName(value) == name,
            f"label map display: value {value} is named {color_node.GetColorName(value)!r}",
        )
        shown = rgb255(color_node.GetLookupTable().GetTableValue(value))
        checks.expect(shown == color, f"label map display: value {value} shows {shown}")


def check_labels_as_segmentation(seg_logic, path: Path, color_node, table, checks) -> None:
    # Slicer's "load label map as segmentation" path, coloured by the table.
    node = seg_logic.LoadSegmentationFromFile(str(path), False, "", color_node)
    if not checks.expect(node is not None, f"{path.name}: not loadable as a segmentation"):
        return
    segments = segments_of(node)
    expected = {name: color for name, color in table.values()}
    checks.expect(
        segments == expected, f"{path.name} as segmentation: segments {segments} != {expected}"
    )


def read_model(scene, path: Path, checks: Checks):
    node = scene.AddNewNodeByClass("vtkMRMLModelNode")
    storage = scene.AddNewNodeByClass("vtkMRMLModelStorageNode")
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    ok = storage.ReadData(node) == 1 and node.GetPolyData() is not None
    if not checks.expect(ok and node.GetPolyData().GetNumberOfPoints() > 0, f"{path}: empty"):
        return None
    return node


def check_mesh_bounds(model, value: int, array, ijk_to_ras, name: str, checks: Checks) -> dict:
    bounds = np.array(model.GetPolyData().GetBounds()).reshape(3, 2)
    ijk = np.argwhere(array == value)
    if not checks.expect(len(ijk) > 0, f"mesh {name}: label {value} has no voxels"):
        return {}
    ras = ijk @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]
    voxel_bounds = np.column_stack([ras.min(axis=0), ras.max(axis=0)])
    tolerance = float(np.linalg.norm(ijk_to_ras[:3, :3], axis=0).max())  # one voxel
    error = float(np.abs(bounds - voxel_bounds).max())
    checks.expect(
        error <= tolerance,
        f"mesh {name}: RAS bounds {bounds.round(2).tolist()} are {error:.2f} mm from its "
        f"voxel bounds {voxel_bounds.round(2).tolist()} (allowed {tolerance:.2f} mm)",
    )
    return {"max_bound_error_mm": round(error, 3), "voxel_mm": round(tolerance, 3)}


def app_scene() -> tuple[object, object, list]:
    """A scene set up as the Slicer application has it: app logic and three slice views."""
    scene, seg_logic = new_scene()
    app = slicer.vtkMRMLApplicationLogic()
    app.SetMRMLScene(scene)
    views = []
    for name in ("Red", "Yellow", "Green"):
        view = slicer.vtkMRMLSliceLogic()
        view.SetMRMLApplicationLogic(app)
        view.SetMRMLScene(scene)
        view.AddSliceNode(name)
        views.append(view)
    return scene, app, [seg_logic, *views]


def check_scene(path: Path, table: dict, affine, checks: Checks) -> tuple[dict, dict]:
    scene, _, logics = app_scene()
    scene.SetURL(str(path))
    if not checks.expect(scene.Import() == 1, f"{path.name}: Slicer could not load the scene"):
        return {}, {}
    summary = {"version": scene.GetLastLoadedVersion()}
    images = [
        n
        for n in list_nodes(scene, "vtkMRMLScalarVolumeNode")
        if not n.IsA("vtkMRMLLabelMapVolumeNode")
    ]
    for view in logics[1:]:
        background = view.GetSliceCompositeNode().GetBackgroundVolumeID()
        checks.expect(
            bool(images) and background == images[0].GetID(),
            f"scene: slice view {view.GetSliceNode().GetName()} shows {background}, not the image",
        )
    for cls in ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode"):
        for node in list_nodes(scene, cls):
            if cls == "vtkMRMLScalarVolumeNode" and node.IsA("vtkMRMLLabelMapVolumeNode"):
                continue
            loaded = checks.expect(
                node.GetImageData() is not None, f"scene: {node.GetName()} has no data"
            )
            if loaded and node.IsA("vtkMRMLLabelMapVolumeNode"):
                check_affine(
                    f"scene label map {node.GetName()}", label_voxels(node)[1], affine, checks
                )
            summary.setdefault("volumes", []).append(node.GetName())
    for node in list_nodes(scene, "vtkMRMLLabelMapVolumeNode"):
        check_label_map_colors(node, table, checks)
    for node in list_nodes(scene, "vtkMRMLSegmentationNode"):
        segments = segments_of(node)
        expected = {name: color for name, color in table.values()}
        checks.expect(segments == expected, f"scene segmentation: {segments} != {expected}")
        summary["segments"] = len(segments)
    models = {}
    by_name = {name: color for name, color in table.values()}
    for node in list_nodes(scene, "vtkMRMLModelNode"):
        if node.GetStorageNode() is None:
            continue  # the slice views' own plane models, not read from a file
        poly = node.GetPolyData()
        checks.expect(
            poly is not None and poly.GetNumberOfPoints() > 0,
            f"scene: model {node.GetName()} has no surface",
        )
        color = rgb255(node.GetDisplayNode().GetColor())
        checks.expect(
            by_name.get(node.GetName()) == color,
            f"scene: model {node.GetName()} coloured {color}, "
            f"table says {by_name.get(node.GetName())}",
        )
        models[node.GetName()] = node
    summary["models"] = sorted(models)
    return summary, models


def check_bundle(path: Path, checks: Checks) -> dict:
    """Open a .mrb as Slicer does (unzip, load the first .mrml found) and count what loaded."""
    import tempfile

    scene, app, _ = app_scene()
    with tempfile.TemporaryDirectory() as tmp:
        ok = app.OpenSlicerDataBundle(str(path), tmp)
        if not checks.expect(bool(ok), f"{path.name}: Slicer could not open the bundle"):
            return {}
        models = [
            n
            for n in list_nodes(scene, "vtkMRMLModelNode")
            if n.GetStorageNode() is not None and n.GetPolyData().GetNumberOfPoints()
        ]
        volumes = [n for n in list_nodes(scene, "vtkMRMLVolumeNode") if n.GetImageData()]
        segs = list_nodes(scene, "vtkMRMLSegmentationNode")
        segments = sum(n.GetSegmentation().GetNumberOfSegments() for n in segs)
    checks.expect(len(volumes) > 0, f"{path.name}: no volume loaded from the bundle")
    return {"models": len(models), "volumes": len(volumes), "segments": segments}


def list_nodes(scene, cls: str) -> list:
    nodes = scene.GetNodesByClass(cls)
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def find_color_table(outdir: Path) -> Path | None:
    for name in ("labels.labels.csv", "labels.csv", "labels.ctbl"):
        if (outdir / name).is_file():
            return outdir / name
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--expected", type=Path, help="JSON label table the outputs must match")
    parser.add_argument("--summary", type=Path, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    outdir = args.outdir
    color_path = find_color_table(outdir)
    if not (outdir / "labels.nii.gz").is_file() or color_path is None:
        sys.stdout.write(json.dumps({"error": f"{outdir}: needs labels.nii.gz and a colour table"}))
        return 2
    checks = Checks()
    scene, seg_logic = new_scene()
    table, color_node = read_color_table(scene, color_path, checks)
    affine, codes = None, {}
    if args.expected:
        expected = json.loads(args.expected.read_text())
        wanted = {
            int(lab["value"]): (lab["name"], tuple(lab["color"])) for lab in expected["labels"]
        }
        checks.expect(table == wanted, f"colour table {table} != expected {wanted}")
        affine = np.array(expected["affine"]) if "affine" in expected else None
        codes = {lab["name"]: lab.get("codes", {}) for lab in expected["labels"]}
    summary: dict = {"outdir": str(outdir), "labels": len(table), "slicer": slicer.__name__}
    labels = read_label_map(scene, outdir / "labels.nii.gz", color_node, checks)
    if labels is not None:
        check_label_map_colors(labels, table, checks)
        check_affine("labels.nii.gz", label_voxels(labels)[1], affine, checks)

    present = {}
    if labels is not None:
        array, ijk_to_ras = label_voxels(labels)
        values = {int(v) for v in np.unique(array) if v}
        present = {value: entry for value, entry in table.items() if value in values}
        check_labels_as_segmentation(
            seg_logic, outdir / "labels.nii.gz", color_node, present, checks
        )
    if (outdir / "segmentation.seg.nrrd").is_file():
        summary["segments"] = len(
            check_segmentation(
                seg_logic, outdir / "segmentation.seg.nrrd", present, affine, codes, checks
            )
        )
    scene_models = {}
    if (outdir / "scene.mrml").is_file():
        summary["scene"], scene_models = check_scene(outdir / "scene.mrml", present, affine, checks)
    value_of = {name: value for value, (name, _) in table.items()}
    meshes = {}
    for path in sorted(p for p in outdir.rglob("*") if p.suffix.lower() in MESH_SUFFIXES):
        model = read_model(scene, path, checks)
        name = next(
            (
                n
                for n in scene_models
                if scene_models[n].GetStorageNode()
                and Path(scene_models[n].GetStorageNode().GetFileName()).resolve() == path.resolve()
            ),
            path.name.split(".")[0],
        )
        if model is None or labels is None:
            continue
        if checks.expect(name in value_of, f"mesh {path.name}: no label named {name!r}"):
            meshes[name] = check_mesh_bounds(model, value_of[name], array, ijk_to_ras, name, checks)
    summary["meshes"] = meshes
    for bundle in sorted(outdir.glob("*.mrb")):
        summary["bundle"] = check_bundle(bundle, checks)
    summary.update(passed=checks.passed, failed=len(checks.failures), failures=checks.failures)
    text = json.dumps(summary, indent=2) + "\n"
    sys.stdout.write(text)
    if args.summary:
        args.summary.write_text(text)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
