"""Write a .seg.nrrd with 3D Slicer's own writer, for testing medrecon's reader.

Runs under the slicer-core virtual environment::

    python write_segmentation.py LABELS.nii.gz COLORS.labels.csv OUT.seg.nrrd [--overlap]

Slicer imports the label map as a segmentation named by the colour table, then
its segmentation storage node writes the file, cropped to the segments' extent as
Slicer does. With ``--overlap`` one more segment is added (a copy of the first
segment shifted by two voxels along i), so Slicer has to write two layers.
"""

from __future__ import annotations

import argparse
import sys

import slicer
import vtk

vtk.vtkOutputWindow.GetInstance().SetDisplayModeToAlwaysStdErr()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels")
    parser.add_argument("colors")
    parser.add_argument("out")
    parser.add_argument("--overlap", action="store_true")
    args = parser.parse_args(argv)

    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode")
    color_storage = scene.AddNewNodeByClass("vtkMRMLColorTableStorageNode")
    color_storage.SetFileName(args.colors)
    if not color_storage.ReadData(colors):
        sys.stderr.write(f"cannot read {args.colors}\n")
        return 2
    node = logic.LoadSegmentationFromFile(args.labels, False, "segmentation", colors)
    if node is None:
        sys.stderr.write(f"cannot load {args.labels} as a segmentation\n")
        return 2
    segmentation = node.GetSegmentation()
    if args.overlap:
        first = segmentation.GetNthSegment(0)
        shifted = slicer.vtkOrientedImageData()
        shifted.DeepCopy(first.GetRepresentation("Binary labelmap"))
        extent = list(shifted.GetExtent())
        shifted.SetExtent(extent[0] + 2, extent[1] + 2, *extent[2:])  # same voxels, 2 further
        extra = slicer.vtkSegment()
        extra.SetName("shifted copy")
        extra.SetColor(0.1, 0.2, 0.3)
        extra.AddRepresentation("Binary labelmap", shifted)
        segmentation.AddSegment(extra, "shifted_copy")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(args.out)
    if not storage.WriteData(node):
        sys.stderr.write(f"Slicer could not write {args.out}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
