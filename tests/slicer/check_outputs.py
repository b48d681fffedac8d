"""Open a medrecon output folder with 3D Slicer's own loading code and check it.

Runs under the Python of a separate virtual environment holding PyPI
``slicer-core`` (it pins its own VTK), never under medrecon's::

    python check_outputs.py OUTDIR [--expected expected.json] [--summary out.json]

What Slicer reads here, with its own classes (see slicer_load.py):

* ``scene.mrml`` through ``vtkMRMLScene`` in a scene set up like the application's
  (every storage node reads its file; the slice views take the scene's settings);
* ``segmentation.seg.nrrd`` through ``vtkSlicerSegmentationsModuleLogic``;
* ``labels.nii.gz`` through ``vtkMRMLVolumeArchetypeStorageNode`` with its colour
  table (``labels.labels.csv``, else ``labels.ctbl``) through
  ``vtkMRMLColorTableStorageNode``, and as a segmentation coloured by it;
* each mesh through ``vtkMRMLModelStorageNode``; each ``*.mrb`` through
  ``vtkMRMLApplicationLogic.OpenSlicerDataBundle``.

Checks: everything loads; names and colours agree across colour table, label
map display, segmentation, scene and models; terminology parses with Slicer's
Terminologies logic; the image is the slice views' background; every mesh's RAS
bounds lie within one voxel of its label's voxel bounds. ``--expected`` adds a
label table ``{"labels": [{"value", "name", "color", "codes"}], "affine": 4x4}``
that the outputs must match, codes and voxel->RAS geometry included. Prints a
JSON summary; exits 1 if any check failed, 2 if the folder cannot be checked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import slicer_load as sl

MESH_SUFFIXES = (".stl", ".vtk", ".vtp", ".ply", ".obj")


class Checks:
    """Counts passed checks and keeps each failure's message."""

    def __init__(self, expected: dict | None) -> None:
        self.failures: list[str] = []
        self.passed = 0
        expected = expected or {}
        self.affine = np.array(expected["affine"]) if "affine" in expected else None
        self.codes = {lab["name"]: lab.get("codes", {}) for lab in expected.get("labels", [])}

    def expect(self, ok: bool, message: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(message)
        return ok

    def affine_matches(self, what: str, found: np.ndarray | None) -> None:
        if self.affine is None:
            return
        ok = found is not None and float(np.abs(found - self.affine).max()) < 1e-3
        shown = None if found is None else found.round(4).tolist()
        self.expect(
            ok, f"{what}: Slicer puts voxels at {shown}, expected {self.affine.round(4).tolist()}"
        )

    def segments_match(self, what: str, node, table: dict) -> dict:
        segments = sl.segments_of(node)
        expected = dict(table.values())
        self.expect(segments == expected, f"{what}: segments {segments} != {expected}")
        seg = node.GetSegmentation()
        for i in range(seg.GetNumberOfSegments()):
            self.terminology_matches(what, seg.GetNthSegment(i))
        return segments

    def terminology_matches(self, what: str, segment) -> None:
        found = sl.segment_codes(segment)
        name = segment.GetName()
        self.expect(found != {}, f"{what}: Slicer cannot parse {name}'s terminology")
        wanted = self.codes.get(name)
        if wanted is not None:
            self.expect(
                (found or None) == (wanted or None),
                f"{what}: segment {name} coded {found}, expected {wanted}",
            )


def check_label_map_colors(node, table: dict, checks: Checks) -> None:
    array, _ = sl.label_voxels(node)
    missing = sorted({int(v) for v in np.unique(array) if v} - set(table))
    checks.expect(not missing, f"{node.GetName()}: values {missing} have no colour table entry")
    color_node = node.GetDisplayNode().GetColorNode()
    for value, (name, color) in table.items():
        shown_name = color_node.GetColorName(value)
        checks.expect(shown_name == name, f"label map: value {value} is named {shown_name!r}")
        shown = sl.rgb255(color_node.GetLookupTable().GetTableValue(value))
        checks.expect(shown == color, f"label map: value {value} shows {shown}, not {color}")


def check_segmentation_file(seg_logic, path: Path, table: dict, checks: Checks) -> int:
    node = seg_logic.LoadSegmentationFromFile(str(path), False)
    if not checks.expect(node is not None, f"{path.name}: Slicer could not load it"):
        return 0
    checks.affine_matches(path.name, sl.segmentation_affine(node))
    checks.expect(
        node.GetSegmentation().ContainsRepresentation("Closed surface"),
        f"{path.name}: Slicer built no closed surface on load",
    )
    return len(checks.segments_match(path.name, node, table))


def check_labels_as_segmentation(seg_logic, path: Path, color_node, table, checks) -> None:
    # Slicer's "load a label map as a segmentation" path, named by the colour table.
    node = seg_logic.LoadSegmentationFromFile(str(path), False, "", color_node)
    if checks.expect(node is not None, f"{path.name}: not loadable as a segmentation"):
        segments = sl.segments_of(node)
        expected = dict(table.values())
        checks.expect(
            segments == expected, f"{path.name} as segmentation: {segments} != {expected}"
        )


def check_mesh_bounds(model, value: int, labels, name: str, checks: Checks) -> dict:
    array, ijk_to_ras = sl.label_voxels(labels)
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


def _scene_volumes(scene, views, table: dict, checks: Checks) -> list[str]:
    volumes = sl.list_nodes(scene, "vtkMRMLVolumeNode")
    images = [n for n in volumes if not n.IsA("vtkMRMLLabelMapVolumeNode")]
    for view in views:
        shown = view.GetSliceCompositeNode().GetBackgroundVolumeID()
        checks.expect(
            bool(images) and shown == images[0].GetID(),
            f"scene: view {view.GetSliceNode().GetName()} shows {shown}, not the image",
        )
    for node in volumes:
        loaded = checks.expect(node.GetImageData() is not None, f"scene: {node.GetName()} no data")
        if loaded and node.IsA("vtkMRMLLabelMapVolumeNode"):
            checks.affine_matches(f"scene label map {node.GetName()}", sl.label_voxels(node)[1])
            check_label_map_colors(node, table, checks)
    return [n.GetName() for n in volumes]


def _scene_models(scene, table: dict, checks: Checks) -> dict[Path, str]:
    colors = dict(table.values())
    files = {}
    for node in sl.list_nodes(scene, "vtkMRMLModelNode"):
        if node.GetStorageNode() is None:
            continue  # the slice views' own plane models, not read from a file
        name, poly = node.GetName(), node.GetPolyData()
        checks.expect(
            poly is not None and poly.GetNumberOfPoints() > 0, f"scene: model {name} has no surface"
        )
        color = sl.rgb255(node.GetDisplayNode().GetColor())
        checks.expect(
            colors.get(name) == color,
            f"scene: model {name} coloured {color}, table says {colors.get(name)}",
        )
        files[Path(node.GetStorageNode().GetFileName()).resolve()] = name
    return files


def check_scene(path: Path, table: dict, checks: Checks) -> tuple[dict, dict[Path, str]]:
    slicer_app = sl.AppScene()
    scene, views = slicer_app.scene, slicer_app.views
    scene.SetURL(str(path))
    if not checks.expect(scene.Import() == 1, f"{path.name}: Slicer could not load the scene"):
        return {}, {}
    summary = {"version": scene.GetLastLoadedVersion()}
    summary["volumes"] = _scene_volumes(scene, views, table, checks)
    for node in sl.list_nodes(scene, "vtkMRMLSegmentationNode"):
        summary["segments"] = len(checks.segments_match("scene segmentation", node, table))
    files = _scene_models(scene, table, checks)
    summary["models"] = sorted(files.values())
    return summary, files


def check_bundle(path: Path, checks: Checks) -> dict:
    """Open a .mrb as Slicer does (unzip, load the first .mrml found) and count what loaded."""
    slicer_app = sl.AppScene()
    scene = slicer_app.scene
    with tempfile.TemporaryDirectory() as tmp:
        if not checks.expect(
            bool(slicer_app.app.OpenSlicerDataBundle(str(path), tmp)),
            f"{path.name}: Slicer could not open the bundle",
        ):
            return {}
        models = [
            n
            for n in sl.list_nodes(scene, "vtkMRMLModelNode")
            if n.GetStorageNode() is not None and n.GetPolyData().GetNumberOfPoints()
        ]
        volumes = [n for n in sl.list_nodes(scene, "vtkMRMLVolumeNode") if n.GetImageData()]
        segs = sl.list_nodes(scene, "vtkMRMLSegmentationNode")
        segments = sum(n.GetSegmentation().GetNumberOfSegments() for n in segs)
    checks.expect(len(volumes) > 0, f"{path.name}: no volume loaded from the bundle")
    return {"models": len(models), "volumes": len(volumes), "segments": segments}


def check_meshes(scene, outdir: Path, labels, table: dict, named: dict[Path, str], checks):
    value_of = {name: value for value, (name, _) in table.items()}
    meshes = {}
    for path in sorted(p for p in outdir.rglob("*") if p.suffix.lower() in MESH_SUFFIXES):
        model = sl.read_model(scene, path)
        if not checks.expect(model is not None, f"{path.name}: Slicer read no surface"):
            continue
        # The scene's model name, else the file name: meshes/<label name>.<format>.
        name = named.get(path.resolve(), path.name.split(".")[0])
        if checks.expect(name in value_of, f"mesh {path.name}: no label named {name!r}"):
            meshes[name] = check_mesh_bounds(model, value_of[name], labels, name, checks)
    return meshes


def check_folder(outdir: Path, color_path: Path, checks: Checks, wanted: dict | None) -> dict:
    scene, seg_logic = sl.new_scene()
    table, color_node = sl.read_color_table(scene, color_path)
    if not checks.expect(table is not None, f"{color_path.name}: Slicer could not read it"):
        return {}
    if wanted is not None:
        checks.expect(table == wanted, f"colour table {table} != expected {wanted}")
    summary: dict = {"outdir": str(outdir), "labels": len(table)}
    labels = sl.read_label_map(scene, outdir / "labels.nii.gz", color_node)
    if not checks.expect(labels is not None, "labels.nii.gz: not read as a label map"):
        return summary
    check_label_map_colors(labels, table, checks)
    checks.affine_matches("labels.nii.gz", sl.label_voxels(labels)[1])
    values = {int(v) for v in np.unique(sl.label_voxels(labels)[0]) if v}
    present = {value: entry for value, entry in table.items() if value in values}
    check_labels_as_segmentation(seg_logic, outdir / "labels.nii.gz", color_node, present, checks)
    if (outdir / "segmentation.seg.nrrd").is_file():
        summary["segments"] = check_segmentation_file(
            seg_logic, outdir / "segmentation.seg.nrrd", present, checks
        )
    named: dict[Path, str] = {}
    if (outdir / "scene.mrml").is_file():
        summary["scene"], named = check_scene(outdir / "scene.mrml", present, checks)
    summary["meshes"] = check_meshes(scene, outdir, labels, table, named, checks)
    for bundle in sorted(outdir.glob("*.mrb")):
        summary["bundle"] = check_bundle(bundle, checks)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--expected", type=Path, help="JSON label table the outputs must match")
    parser.add_argument("--summary", type=Path, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    outdir = args.outdir
    color_path = next(
        (outdir / n for n in ("labels.labels.csv", "labels.ctbl") if (outdir / n).is_file()), None
    )
    if not (outdir / "labels.nii.gz").is_file() or color_path is None:
        sys.stdout.write(
            json.dumps(
                {
                    "error": f"{outdir}: needs labels.nii.gz and its colour "
                    "table (labels.labels.csv or labels.ctbl)"
                }
            )
            + "\n"
        )
        return 2
    expected = json.loads(args.expected.read_text()) if args.expected else None
    wanted = (
        None
        if expected is None
        else {int(lab["value"]): (lab["name"], tuple(lab["color"])) for lab in expected["labels"]}
    )
    checks = Checks(expected)
    summary = check_folder(outdir, color_path, checks, wanted)
    summary.update(passed=checks.passed, failed=len(checks.failures), failures=checks.failures)
    text = json.dumps(summary, indent=2) + "\n"
    sys.stdout.write(text)
    if args.summary:
        args.summary.write_text(text)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
