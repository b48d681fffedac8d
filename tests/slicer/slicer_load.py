"""Loading files with 3D Slicer's own classes (PyPI slicer-core), for check_outputs.py.

Each reader goes through the Slicer node and storage node that the application
uses for that file type, and returns None where Slicer could not read the file.
Runs only under the slicer-core virtual environment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk
from vtkmodules.util import numpy_support

# VTK and Slicer messages go to stderr, so stdout holds only the JSON summary.
vtk.vtkOutputWindow.GetInstance().SetDisplayModeToAlwaysStdErr()

RGB = tuple[int, int, int]


def rgb255(values) -> RGB:
    return tuple(round(float(v) * 255) for v in list(values)[:3])


def matrix_array(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def list_nodes(scene, cls: str) -> list:
    nodes = scene.GetNodesByClass(cls)
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def new_scene():
    """A scene plus the Segmentations logic, which registers its node classes with it."""
    scene = slicer.vtkMRMLScene()
    seg_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    seg_logic.SetMRMLScene(scene)
    return scene, seg_logic


class AppScene:
    """A scene as the Slicer application has it: app logic and the three slice views.

    Keep this object alive while the scene is used: the slice logics hold plain
    pointers to the application logic, so dropping it early crashes VTK.
    """

    def __init__(self) -> None:
        self.scene, self.seg_logic = new_scene()
        self.app = slicer.vtkMRMLApplicationLogic()
        self.app.SetMRMLScene(self.scene)
        self.views = []
        for name in ("Red", "Yellow", "Green"):
            view = slicer.vtkMRMLSliceLogic()
            view.SetMRMLApplicationLogic(self.app)
            view.SetMRMLScene(self.scene)
            view.AddSliceNode(name)
            self.views.append(view)


def _read(scene, node_class: str, storage_class: str, path: Path):
    node = scene.AddNewNodeByClass(node_class)
    storage = scene.AddNewNodeByClass(storage_class)
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    return node if storage.ReadData(node) == 1 else None


def read_color_table(scene, path: Path):
    """``({value: (name, RGB)}, node)`` as Slicer's colour table reader sees the file."""
    node = _read(scene, "vtkMRMLColorTableNode", "vtkMRMLColorTableStorageNode", path)
    if node is None:
        return None, None
    table = {}
    for value in range(1, node.GetNumberOfColors()):
        name = node.GetColorName(value)
        if name and name != "(none)":
            table[value] = (name, rgb255(node.GetLookupTable().GetTableValue(value)))
    return table, node


def read_label_map(scene, path: Path, color_node):
    """A label map volume node, displayed through ``color_node`` when given."""
    node = _read(scene, "vtkMRMLLabelMapVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", path)
    if node is None:
        return None
    node.CreateDefaultDisplayNodes()
    if color_node is not None:
        node.GetDisplayNode().SetAndObserveColorNodeID(color_node.GetID())
    return node


def read_model(scene, path: Path):
    node = _read(scene, "vtkMRMLModelNode", "vtkMRMLModelStorageNode", path)
    if node is None or node.GetPolyData() is None or node.GetPolyData().GetNumberOfPoints() == 0:
        return None
    return node


def label_voxels(node) -> tuple[np.ndarray, np.ndarray]:
    """A volume node's voxels as an (i, j, k) array and the voxel->RAS matrix Slicer derived."""
    image = node.GetImageData()
    dims = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    array = flat.reshape(dims[2], dims[1], dims[0]).transpose(2, 1, 0)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return array, matrix_array(matrix)


def segmentation_affine(node) -> np.ndarray | None:
    """Voxel->RAS of the segmentation's binary labelmap, as Slicer read it."""
    seg = node.GetSegmentation()
    if seg.GetNumberOfSegments() == 0:
        return None
    image = seg.GetNthSegment(0).GetRepresentation("Binary labelmap")
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return matrix_array(matrix)


def segments_of(segmentation_node) -> dict[str, RGB]:
    seg = segmentation_node.GetSegmentation()
    return {
        seg.GetNthSegment(i).GetName(): rgb255(seg.GetNthSegment(i).GetColor())
        for i in range(seg.GetNumberOfSegments())
    }


def segment_codes(segment) -> dict[str, list[str]] | None:
    """Category, type and modifier as Slicer's terminology parser reads the segment's tag.

    None when the segment has no terminology; {} when Slicer cannot parse it.
    """
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
