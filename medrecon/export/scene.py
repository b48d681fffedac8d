"""A Slicer scene (``scene.mrml``) that opens every output at once, and its ``.mrb``.

The scene is MRML XML as Slicer's ``vtkMRMLScene::Commit`` writes it: one
element per node, display and storage nodes joined to their data node by
``references="display:...;storage:...;"``. File names are relative to the
scene's folder, so the output folder can be moved or zipped as a whole. Only
attributes medrecon sets are written; Slicer fills in its defaults for the
rest when it reads the scene. Geometry is not in the scene: each storage node
reads it from its file, so the scene cannot disagree with the files.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from medrecon.atomic import atomic_write_path, atomic_write_text
from medrecon.errors import InputError
from medrecon.labels import Label

__all__ = ["MRML_VERSION", "scene_files", "write_mrb", "write_scene"]

logger = logging.getLogger(__name__)

#: A Slicer 5 scene version in the form Slicer writes, "<application>
#: <major.minor.patch> <revision>", which vtkMRMLScene::ParseVersion reads in full
#: (Slicer reads it to recognise scenes written by older versions).
MRML_VERSION = "Slicer 5.8.1 33241"

#: MRML storage nodes whose ``fileName`` attribute names a data file.
_STORAGE_TAGS = (
    "VolumeArchetypeStorage",
    "ColorTableStorage",
    "SegmentationStorage",
    "ModelStorage",
)

_SUFFIXES = (".seg.nrrd", ".labels.csv", ".nii.gz", ".nii", ".nrrd", ".stl", ".vtk", ".ply")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _rgb(color: Sequence[int]) -> str:
    return " ".join(f"{c / 255.0:.6g}" for c in color)


class _SceneBuilder:
    """Collects nodes with Slicer-style ids (``vtkMRML<Class>Node<N>``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.root = ET.Element("MRML", version=MRML_VERSION, userTags="")
        self._counts: dict[str, int] = {}

    def node_id(self, cls: str) -> str:
        self._counts[cls] = self._counts.get(cls, 0) + 1
        return f"vtkMRML{cls}{self._counts[cls]}"

    def add(self, tag: str, node_id: str, **attrs: str) -> str:
        ET.SubElement(self.root, tag, id=node_id, **attrs)
        return node_id

    def relative(self, path: str | os.PathLike[str], what: str) -> str:
        """``path`` relative to the scene folder, checked to exist (POSIX separators)."""
        path = Path(path)
        full = path if path.is_absolute() else self.folder / path
        if not full.is_file():
            raise InputError(f"scene {what} file {full} does not exist; write it before the scene")
        return Path(os.path.relpath(full, self.folder)).as_posix()

    def storage(self, cls: str, tag: str, file_name: str, **attrs: str) -> str:
        node_id = self.node_id(f"{cls}StorageNode")
        return self.add(tag, node_id, name=tag, fileName=file_name, hideFromEditors="true", **attrs)


def _refs(display: str | None, storage: str) -> str:
    parts = ([f"display:{display}"] if display else []) + [f"storage:{storage}"]
    return "".join(p + ";" for p in parts)


def _add_image(b: _SceneBuilder, path: str | os.PathLike[str], name: str | None) -> str:
    file_name = b.relative(path, "image")
    storage = b.storage("VolumeArchetype", "VolumeArchetypeStorage", file_name)
    display = b.add(
        "VolumeDisplay",
        b.node_id("ScalarVolumeDisplayNode"),
        name="VolumeDisplay",
        hideFromEditors="true",
        autoWindowLevel="1",
        interpolate="1",
    )
    return b.add(
        "Volume",
        b.node_id("ScalarVolumeNode"),
        name=name or _stem(Path(path)),
        references=_refs(display, storage),
    )


def _add_labels(
    b: _SceneBuilder, path: str | os.PathLike[str], color_table: str | None, name: str | None
) -> str:
    display_attrs = {
        "name": "LabelMapVolumeDisplay",
        "hideFromEditors": "true",
        "sliceIntersectionThickness": "3",
    }
    if color_table is not None:
        file_name = b.relative(color_table, "colour table")
        storage = b.storage("ColorTable", "ColorTableStorage", file_name)
        # type 14 = "File": the colours are read from the storage node's file.
        color_id = b.add(
            "ColorTable",
            b.node_id("ColorTableNode"),
            name=f"{_stem(Path(color_table))}_ColorTable",
            type="14",
            hideFromEditors="false",
            references=_refs(None, storage),
        )
        display_attrs["colorNodeID"] = color_id
    storage = b.storage("VolumeArchetype", "VolumeArchetypeStorage", b.relative(path, "labels"))
    display = b.add(
        "LabelMapVolumeDisplay", b.node_id("LabelMapVolumeDisplayNode"), **display_attrs
    )
    return b.add(
        "LabelMapVolume",
        b.node_id("LabelMapVolumeNode"),
        name=name or _stem(Path(path)),
        references=_refs(display, storage),
    )


def _add_segmentation(
    b: _SceneBuilder, path: str | os.PathLike[str], name: str | None, show_3d: bool
) -> str:
    storage = b.storage("Segmentation", "SegmentationStorage", b.relative(path, "segmentation"))
    display = b.add(
        "SegmentationDisplay",
        b.node_id("SegmentationDisplayNode"),
        name="SegmentationDisplay",
        hideFromEditors="true",
        visibility="true",
        visibility2D="true",
        visibility3D="true" if show_3d else "false",
        Visibility2DFill="true",
        Visibility2DOutline="true",
        Opacity2DFill="0.5",
    )
    return b.add(
        "Segmentation",
        b.node_id("SegmentationNode"),
        name=name or _stem(Path(path)),
        SourceRepresentationName="Binary labelmap",
        references=_refs(display, storage),
    )


def _add_model(b: _SceneBuilder, path: str | os.PathLike[str], label: Label) -> str:
    # Meshes are written in LPS (with SPACE=LPS in the file), as Slicer expects.
    storage = b.storage(
        "Model", "ModelStorage", b.relative(path, f"mesh ({label.name})"), coordinateSystem="LPS"
    )
    display = b.add(
        "ModelDisplay",
        b.node_id("ModelDisplayNode"),
        name="ModelDisplay",
        hideFromEditors="true",
        color=_rgb(label.color),
        opacity="1",
        visibility="true",
        visibility2D="true",
        visibility3D="true",
        scalarVisibility="false",
        backfaceCulling="false",
    )
    return b.add(
        "Model", b.node_id("ModelNode"), name=label.name, references=_refs(display, storage)
    )


def _show_in_slice_views(b: _SceneBuilder, background: str | None) -> None:
    # The three standard slice views show the image as background on load.
    if background is None:
        return
    for view in ("Red", "Yellow", "Green"):
        b.add(
            "SliceComposite",
            f"vtkMRMLSliceCompositeNode{view}",
            name=f"SliceComposite{view}",
            hideFromEditors="true",
            singletonTag=view,
            layoutName=view,
            backgroundVolumeID=background,
        )


def write_scene(
    path: str | os.PathLike[str],
    *,
    image: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    color_table: str | os.PathLike[str] | None = None,
    segmentation: str | os.PathLike[str] | None = None,
    meshes: Iterable[tuple[str | os.PathLike[str], Label]] = (),
    volumes: Iterable[tuple[str | os.PathLike[str], str]] = (),
    image_name: str | None = None,
    labels_name: str | None = None,
    segmentation_name: str | None = None,
    segmentation_3d: bool | None = None,
) -> Path:
    """Write a Slicer scene that loads the given output files in one File > Open.

    Paths are absolute or relative to the scene's folder; they are written
    relative to it and must exist already. ``meshes`` pairs each mesh file with
    the label it shows (name and colour); ``volumes`` pairs further plain scalar
    volumes (e.g. the source stacks of a reconstruction) with their node names,
    loaded beside ``image``, which stays the slice views' background. ``segmentation_3d`` shows the
    segmentation's surfaces in 3D; by default only when there are no meshes, so
    the same surface is not drawn twice. Written atomically; returns the path.
    """
    path = Path(path)
    meshes, volumes = list(meshes), list(volumes)
    if image is None and labels is None and segmentation is None and not (meshes or volumes):
        raise InputError(f"scene {path}: nothing to show (no image, labels, segmentation or mesh)")
    if color_table is not None and labels is None:
        raise InputError(f"scene {path}: a colour table needs the label map it colours")
    b = _SceneBuilder(path.parent)
    image_id = _add_image(b, image, image_name) if image is not None else None
    for volume_path, volume_name in volumes:
        added = _add_image(b, volume_path, volume_name)
        image_id = image_id or added
    if labels is not None:
        _add_labels(b, labels, color_table, labels_name)
    if segmentation is not None:
        show_3d = not meshes if segmentation_3d is None else segmentation_3d
        _add_segmentation(b, segmentation, segmentation_name, show_3d)
    for mesh_path, label in meshes:
        _add_model(b, mesh_path, label)
    _show_in_slice_views(b, image_id)
    ET.indent(b.root, space=" ")
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(b.root, encoding="unicode")
    atomic_write_text(path, text + "\n")
    logger.info("wrote scene %s", path)
    return path


def _storage_nodes(root: ET.Element) -> list[ET.Element]:
    return [n for tag in _STORAGE_TAGS for n in root.iter(tag) if n.get("fileName")]


def _read_scene(scene: Path) -> ET.Element:
    try:
        return ET.parse(scene).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"cannot read scene {scene}: {exc}") from exc


def scene_files(scene: str | os.PathLike[str]) -> list[Path]:
    """The data files a scene's storage nodes name, resolved against its folder."""
    scene = Path(scene)
    nodes = _storage_nodes(_read_scene(scene))
    return [(scene.parent / n.get("fileName")).resolve() for n in nodes]


def write_mrb(
    outdir: str | os.PathLike[str],
    mrb_path: str | os.PathLike[str],
    *,
    scene_name: str = "scene.mrml",
) -> Path:
    """Zip ``outdir``'s scene and the files it names into a Slicer ``.mrb``.

    The layout is the one Slicer's own bundle writer makes: a top folder named
    after the bundle holding ``<name>.mrml`` and a ``Data/`` folder with the
    files (here at their paths within ``outdir``, so names cannot clash), the
    scene's file names pointing into ``Data/``. Slicer opens the first ``.mrml``
    it finds in the unpacked bundle. Written atomically; returns the path.
    """
    outdir = Path(outdir).resolve()
    mrb_path = Path(mrb_path)
    scene = outdir / scene_name
    if not scene.is_file():
        raise InputError(f"no scene {scene} to bundle; write the scene first")
    top = mrb_path.stem if mrb_path.suffix.lower() == ".mrb" else mrb_path.name
    root = _read_scene(scene)
    data: dict[str, Path] = {}
    for node in _storage_nodes(root):
        source = (scene.parent / node.get("fileName")).resolve()
        if not source.is_file() or outdir not in source.parents:
            raise InputError(f"scene file {source} is missing or outside {outdir}")
        name = "Data/" + source.relative_to(outdir).as_posix()
        node.set("fileName", name)
        data[name] = source
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
    # Bundles hold already-compressed files: light deflate keeps the write quick.
    with (
        atomic_write_path(mrb_path) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
    ):
        zf.writestr(f"{top}/", b"")
        zf.writestr(f"{top}/{top}.mrml", text + "\n")
        for name, source in data.items():
            zf.write(source, f"{top}/{name}")
    logger.info("wrote scene bundle %s (%d data files)", mrb_path, len(data))
    return mrb_path
