"""Build a medrecon output folder from real labels, as ``medrecon run`` lays it out.

Shared by the Slicer-loading test and the scene tests. Meshes come from
medrecon's mesh exporter; :func:`write_stl_lps` is a plain marching-cubes STL
writer kept for tests that need a deliberately wrong mesh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medrecon.export.colortable import write_color_csv
from medrecon.export.meshio import write_meshes
from medrecon.export.scene import write_scene
from medrecon.export.segnrrd import write_seg_nrrd
from medrecon.io.nifti import read_nifti, write_nifti
from medrecon.labels import Label
from medrecon.labels.terminology import TISSUE, describe
from medrecon.volume import Volume

__all__ = ["build_outdir", "label_codes", "oblique", "real_case", "write_stl_lps"]

_STL_FACE = np.dtype(
    [("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attr", "<u2")], align=False
)


def write_stl_lps(path: Path, labels: Volume, value: int) -> Path:
    """Marching-cubes surface of one label, written in LPS millimetres."""
    from skimage import measure

    mask = np.pad(labels.array == value, 1)
    verts, faces, _, _ = measure.marching_cubes(mask.astype(np.float32), 0.5)
    ras = labels.voxel_to_ras(verts - 1.0)  # undo the padding
    lps = ras * np.array([-1.0, -1.0, 1.0])
    tris = lps[faces]
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    records = np.zeros(len(faces), dtype=_STL_FACE)
    records["normal"] = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    records["vertices"] = tris
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"SPACE=LPS".ljust(80, b" "))
        f.write(np.uint32(len(faces)).tobytes())
        f.write(records.tobytes())
    return path


def real_case(shared_data: Path, case: str, names: Sequence[str]) -> tuple[Volume, Volume, list]:
    """(image, labels, table) of a shared-data case, keeping only the named labels."""
    folder = shared_data / case
    image_name = "ct.nii.gz" if case.startswith("ct") else "mr.nii.gz"
    label_names = json.loads((folder / "labels.json").read_text())
    value_of = {name: int(value) for value, name in label_names.items()}
    labels = read_nifti(folder / "labels.nii.gz")
    keep = [value_of[name] for name in names]
    array = np.where(np.isin(labels.array, keep), labels.array, 0).astype(np.uint8)
    table = [describe(name, value_of[name]) for name in names]
    return read_nifti(folder / image_name), labels.with_array(array), table


def oblique(vol: Volume, degrees: float = 25.0) -> Volume:
    """The same voxels on a grid rotated about the superior axis and tilted."""
    a, t = np.radians(degrees), np.radians(degrees / 2)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    affine = vol.affine.copy()
    affine[:3, :3] = rz @ rx @ vol.affine[:3, :3]
    return Volume(vol.array, affine)


def label_codes(label: Label) -> dict[str, list[str]]:
    """The codes check_outputs.py expects Slicer to parse from the segment's terminology."""
    parts = {"category": label.category, "type": label.type, "type_modifier": label.type_modifier}
    if label.type is None:  # written with Slicer's generic Tissue/Tissue
        parts = {"category": TISSUE, "type": TISSUE}
    return {k: [c.scheme, c.value, c.meaning] for k, c in parts.items() if c is not None}


def build_outdir(
    outdir: Path,
    image: Volume,
    labels: Volume,
    table: Sequence[Label],
    mesh_names: Sequence[str],
    mesh_format: str = "stl",
) -> Path:
    """Write image, labels + colour table, seg.nrrd, meshes, scene and expected.json."""
    outdir.mkdir(parents=True, exist_ok=True)
    write_nifti(image, outdir / "image.nii.gz")
    write_nifti(labels, outdir / "labels.nii.gz")
    write_color_csv(outdir / "labels.labels.csv", table)
    write_seg_nrrd(outdir / "segmentation.seg.nrrd", labels, table)
    by_name = {label.name: label for label in table}
    wanted = [by_name[name].value for name in mesh_names]
    reports = write_meshes(outdir / "meshes", labels, table, fmt=mesh_format, labels=wanted)
    meshes = [(report.path.relative_to(outdir), report.mesh.label) for report in reports]
    write_scene(
        outdir / "scene.mrml",
        image="image.nii.gz",
        labels="labels.nii.gz",
        color_table="labels.labels.csv",
        segmentation="segmentation.seg.nrrd",
        meshes=meshes,
    )
    expected = {
        "labels": [
            {
                "value": lab.value,
                "name": lab.name,
                "color": list(lab.color),
                "codes": label_codes(lab),
            }
            for lab in table
        ],
        "affine": labels.affine.tolist(),
    }
    (outdir / "expected.json").write_text(json.dumps(expected, indent=1))
    return outdir
