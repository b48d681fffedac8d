"""Mesh files Slicer opens in the right place: STL, OBJ, PLY, VTP in LPS.

Slicer's model reader (``vtkMRMLModelStorageNode``) looks for ``SPACE=LPS``
or ``SPACE=RAS`` in the STL header, the OBJ comment and the PLY comments, and
for a string array named ``SPACE`` in the field data of a VTP file; without
one it assumes the coordinate system it was told. Every file written here
says ``SPACE=LPS`` that way, and its coordinates are LPS millimetres.

STL, OBJ and PLY are written with NumPy (binary STL and PLY); VTP with VTK's
XML writer. Every file is written atomically.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medrecon.atomic import atomic_write_path
from medrecon.errors import FormatError
from medrecon.export import MESH_FORMATS
from medrecon.export.mesh import LabelMesh, label_meshes
from medrecon.labels import Label
from medrecon.volume import Volume

__all__ = ["MESH_FORMATS", "MeshReport", "mesh_file_name", "write_mesh", "write_meshes"]

logger = logging.getLogger(__name__)


#: What Slicer searches the header / comments for.
SPACE_TAG = "SPACE=LPS"


@dataclass(frozen=True)
class MeshReport:
    """One written mesh file and the mesh it holds."""

    path: Path
    mesh: LabelMesh

    def figures(self) -> dict[str, Any]:
        return {"file": self.path.name, **self.mesh.figures()}


def write_meshes(
    folder: str | os.PathLike[str],
    label_map: Volume,
    label_table: Sequence[Label] = (),
    *,
    fmt: str = "stl",
    smoothing: float = 0.5,
    decimate: float = 0.5,
    preserve_volume: bool = True,
    labels: Iterable[int] | None = None,
    threads: int = 1,
) -> list[MeshReport]:
    """Write ``<folder>/<label name>.<fmt>`` for every label present (see
    :func:`medrecon.export.mesh.label_meshes` for the options). The folder is
    created if needed; files of the same names are replaced."""
    fmt = _check_format(fmt, None)
    meshes = label_meshes(
        label_map,
        label_table,
        smoothing=smoothing,
        decimate=decimate,
        preserve_volume=preserve_volume,
        labels=labels,
        threads=threads,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reports = []
    taken: set[str] = set()
    for mesh in meshes:
        name = mesh_file_name(mesh.label, fmt, taken)
        taken.add(name.lower())
        reports.append(MeshReport(write_mesh(folder / name, mesh, fmt), mesh))
    logger.info("wrote %d %s meshes to %s", len(reports), fmt, folder)
    return reports


def mesh_file_name(label: Label, fmt: str, taken: Iterable[str] = ()) -> str:
    """``<sanitised name>.<fmt>``; ``_<value>`` added when the name is taken
    (compared without case, for case-insensitive file systems)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", label.name).strip("._-")[:100]
    stem = stem or f"label_{label.value}"
    taken = {t.lower() for t in taken}
    if f"{stem}.{fmt}".lower() in taken:
        stem = f"{stem}_{label.value}"
    return f"{stem}.{fmt}"


def write_mesh(path: str | os.PathLike[str], mesh: LabelMesh, fmt: str | None = None) -> Path:
    """Write one mesh (LPS mm, ``SPACE=LPS`` header) atomically; ``fmt`` from the suffix
    when None."""
    path = Path(path)
    fmt = _check_format(fmt, path)
    writer = {"stl": _write_stl, "obj": _write_obj, "ply": _write_ply, "vtp": _write_vtp}[fmt]
    with atomic_write_path(path) as tmp:
        writer(tmp, mesh)
    return path


def _check_format(fmt: str | None, path: Path | None) -> str:
    if fmt is None and path is not None:
        fmt = path.suffix.lstrip(".")
    fmt = (fmt or "").lower()
    if fmt not in MESH_FORMATS:
        where = f" for {path}" if path is not None else ""
        raise FormatError(
            f"unknown mesh format {fmt!r}{where}; choose one of {', '.join(MESH_FORMATS)}"
        )
    return fmt


def _header_text(mesh: LabelMesh) -> str:
    return f"medrecon {SPACE_TAG} label={mesh.label.value} {mesh.label.name}"


def _write_stl(path: Path, mesh: LabelMesh) -> None:
    """Binary STL: 80-byte header (never starting with "solid", which would
    read as ASCII), triangle count, then normal + 3 vertices + attribute each."""
    verts = mesh.vertices
    tri = verts[mesh.faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = normal / np.where(length > 0, length, 1.0)
    record = np.dtype([("normal", "<f4", 3), ("vertex", "<f4", (3, 3)), ("attr", "<u2")])
    data = np.zeros(len(tri), record)
    data["normal"] = normal
    data["vertex"] = tri
    header = _header_text(mesh).encode("ascii", "replace")[:80].ljust(80, b" ")
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.uint32(len(tri)).tobytes())
        f.write(data.tobytes())


def _write_obj(path: Path, mesh: LabelMesh) -> None:
    # vtkOBJReader keeps the leading comment lines; Slicer searches them for SPACE=.
    lines = [f"# {_header_text(mesh)}\n", f"o {_obj_name(mesh.label.name)}\n"]
    with open(path, "w", encoding="ascii", errors="replace", newline="\n") as f:
        f.writelines(lines)
        np.savetxt(f, mesh.vertices, fmt="v %.6f %.6f %.6f")
        np.savetxt(f, mesh.faces + 1, fmt="f %d %d %d")


def _obj_name(name: str) -> str:
    return re.sub(r"\s+", "_", name) or "mesh"


def _write_ply(path: Path, mesh: LabelMesh) -> None:
    """Binary little-endian PLY with ``comment SPACE=LPS`` (read back by
    vtkPLYReader.GetComments, which Slicer searches)."""
    n_v, n_f = len(mesh.vertices), len(mesh.faces)
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment {_header_text(mesh)}\n"
        f"element vertex {n_v}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {n_f}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face = np.dtype([("n", "u1"), ("idx", "<i4", 3)])
    faces = np.zeros(n_f, face)
    faces["n"] = 3
    faces["idx"] = mesh.faces
    with open(path, "wb") as f:
        f.write(header.encode("ascii", "replace"))
        f.write(np.ascontiguousarray(mesh.vertices, "<f4").tobytes())
        f.write(faces.tobytes())


def _write_vtp(path: Path, mesh: LabelMesh) -> None:
    """VTK XML poly data, zlib-compressed, with the field-data string array
    ``SPACE`` = ``LPS`` that Slicer reads (and then removes) on load."""
    from vtkmodules.vtkCommonCore import vtkStringArray
    from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter

    from medrecon.export.mesh_filters import to_polydata

    poly = to_polydata(mesh.vertices, mesh.faces)
    space = vtkStringArray()
    space.SetName("SPACE")
    space.InsertNextValue("LPS")
    poly.GetFieldData().AddArray(space)
    writer = vtkXMLPolyDataWriter()
    writer.SetInputData(poly)
    writer.SetFileName(str(path))
    writer.SetCompressorTypeToZLib()
    writer.SetDataModeToAppended()
    if writer.Write() != 1:
        raise OSError(f"VTK could not write the mesh file {path}")
