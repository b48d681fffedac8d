"""Label meshes: exact shapes, orientation in every grid, files read back.

Synthetic shapes have exact answers (sphere and ellipsoid volume and area),
as scikit-image's measure tests do; files are read back by VTK's own readers
(the ones Slicer's model storage node uses) and by a plain STL parser.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.special import ellipeinc, ellipkinc

from medrecon.errors import FormatError, InputError
from medrecon.export.mesh import label_meshes
from medrecon.export.mesh_filters import (
    decimate_mesh,
    default_decimator,
    euler_characteristic,
    is_watertight,
    mesh_volume,
    restore_volume,
    smooth_mesh,
    vertex_normals,
)
from medrecon.export.meshio import mesh_file_name, write_mesh, write_meshes
from medrecon.labels import Label
from medrecon.space import LPS_TO_RAS
from medrecon.volume import Volume

pytest.importorskip("vtkmodules")

LPS = np.diag([-1.0, -1.0, 1.0])


def ball(shape, centre, radii, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Voxels whose centres lie inside the ellipsoid (mm radii, mm centre)."""
    grid = np.indices(shape, dtype=np.float64)
    r2 = sum(((g * s - c) / r) ** 2 for g, s, c, r in zip(grid, spacing, centre, radii))
    return (r2 <= 1.0).astype(np.uint8)


def ellipsoid_area(a: float, b: float, c: float) -> float:
    """Exact surface area (Legendre's elliptic-integral form), a >= b >= c."""
    a, b, c = sorted((a, b, c), reverse=True)
    if a == c:
        return 4 * np.pi * a**2
    phi = np.arccos(c / a)
    m = a**2 * (b**2 - c**2) / (b**2 * (a**2 - c**2))
    s = np.sin(phi)
    return float(
        2 * np.pi * c**2
        + 2 * np.pi * a * b / s * (ellipeinc(phi, m) * s**2 + ellipkinc(phi, m) * np.cos(phi) ** 2)
    )


def rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def affine(linear, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = origin
    return out


# -- exact shapes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("smoothing", "decimate"), [(0.5, 0.0), (0.5, 0.5), (0.5, 0.75), (0.25, 0.5)]
)
def test_sphere_volume_and_area(smoothing, decimate):
    radius = 24.0
    shape = (56, 56, 56)
    vol = Volume(ball(shape, (27.5, 27.5, 27.5), (radius,) * 3), np.eye(4))
    (mesh,) = label_meshes(vol, smoothing=smoothing, decimate=decimate, preserve_volume=False)
    exact_v, exact_a = 4 / 3 * np.pi * radius**3, 4 * np.pi * radius**2
    assert mesh.mesh_volume_mm3 == pytest.approx(exact_v, rel=0.02)
    assert mesh.area_mm2 == pytest.approx(exact_a, rel=0.02)
    assert mesh.watertight
    assert abs(mesh.volume_change) < 0.02
    assert mesh.voxel_volume_mm3 == vol.array.sum()
    if decimate:
        (whole,) = label_meshes(vol, smoothing=smoothing, decimate=0.0)
        assert len(mesh.faces) <= (1 - decimate) * len(whole.faces) * 1.05


def test_raw_marching_cubes_volume_is_the_voxel_volume():
    vol = Volume(ball((56, 56, 56), (27.5, 27.5, 27.5), (24.0,) * 3), np.eye(4))
    (raw,) = label_meshes(vol, smoothing=0.0, decimate=0.0, preserve_volume=False)
    assert raw.mesh_volume_mm3 == pytest.approx(4 / 3 * np.pi * 24.0**3, rel=0.01)
    assert raw.offset_mm == 0.0
    assert raw.watertight


@pytest.mark.parametrize("decimate", [0.0, 0.5])
def test_ellipsoid_on_anisotropic_grid(decimate):
    spacing = (0.8, 1.0, 1.5)
    radii = (30.0, 22.0, 16.0)
    shape = (81, 50, 27)
    centre = [(n - 1) * s / 2 for n, s in zip(shape, spacing)]
    vol = Volume(ball(shape, centre, radii, spacing), affine(np.diag(spacing)))
    (mesh,) = label_meshes(vol, decimate=decimate)
    assert mesh.mesh_volume_mm3 == pytest.approx(4 / 3 * np.pi * np.prod(radii), rel=0.02)
    assert mesh.area_mm2 == pytest.approx(ellipsoid_area(*radii), rel=0.02)
    assert mesh.watertight
    # the volume restore: what smoothing took is given back, within 0.1 %
    assert mesh.mesh_volume_mm3 == pytest.approx(mesh.voxel_volume_mm3, rel=1e-3)
    assert 0 < mesh.offset_mm < 0.5 * min(spacing)


def test_ellipsoid_area_formula_against_sphere_and_thomsen():
    a, c = 5.0, 3.0  # oblate spheroid: closed form
    e = np.sqrt(1 - c**2 / a**2)
    spheroid = 2 * np.pi * a**2 * (1 + (1 - e**2) / e * np.arctanh(e))
    assert ellipsoid_area(a, a, c) == pytest.approx(spheroid, rel=1e-9)
    p = 1.6075  # Knud Thomsen's approximation, within 1.1 %
    a, b, c = 30.0, 22.0, 16.0
    approx = 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    assert ellipsoid_area(a, b, c) == pytest.approx(approx, rel=0.011)


# -- orientation: winding and patient position ----------------------------------------

GRIDS = {
    "ras": affine(np.eye(3)),
    "lps": affine(np.diag([-1.0, -1.0, 1.0]), (40.0, 40.0, 0.0)),
    "permuted": affine(np.array([[0, 0, 1.0], [1, 0, 0], [0, 1, 0]]) * 1.5),
    "mirrored": affine(np.diag([-0.7, 1.0, 1.2])),
    "oblique": affine(rotation((1, 2, 3), 37) @ np.diag([1.0, 0.9, 1.3]), (5.0, -3.0, 7.0)),
    "oblique-mirrored": affine(rotation((3, -1, 2), 61) @ np.diag([-1.1, 1.0, 0.8])),
}


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_outward_and_watertight_in_every_grid(grid):
    labels = ball((40, 40, 40), (19.5, 19.5, 19.5), (14.0, 10.0, 12.0))
    labels[20:, :, :] *= 2  # two labels sharing a flat face
    labels[0:4, 0:4, 0:4] = 3  # a label touching the edge of the volume
    vol = Volume(labels, GRIDS[grid])
    meshes = label_meshes(vol, decimate=0.5)
    assert [m.label.value for m in meshes] == [1, 2, 3]
    for mesh in meshes:
        assert mesh.watertight, mesh.label
        assert mesh_volume(mesh.vertices, mesh.faces) > 0  # outward normals
        assert mesh.mesh_volume_mm3 == pytest.approx(mesh.voxel_volume_mm3, rel=0.01)


def _same_anatomy() -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric three-label map on a RAS grid (1.25 mm), and its affine."""
    shape = (48, 40, 36)
    sp = (1.25, 1.25, 1.25)
    labels = ball(shape, (30, 25, 22), (18, 12, 9), sp)
    labels[ball(shape, (40, 20, 20), (8, 6, 6), sp) > 0] = 2
    labels[ball(shape, (20, 30, 26), (5, 7, 4), sp) > 0] = 3
    return labels, affine(np.diag(sp), (-30.0, 12.0, -40.0))


def solid_centroid(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Centroid of the enclosed solid (tetrahedra to the origin), whatever the triangulation."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    tet = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    return ((a + b + c) / 4.0 * tet[:, None]).sum(axis=0) / tet.sum()


def _lps_stats(meshes) -> dict[int, np.ndarray]:
    """Per label: LPS min, max and solid centroid."""
    return {
        m.label.value: np.stack(
            [m.vertices.min(axis=0), m.vertices.max(axis=0), solid_centroid(m.vertices, m.faces)]
        )
        for m in meshes
    }


@pytest.mark.parametrize("variant", ["lps", "permuted-flipped"])
def test_same_anatomy_exact_grids_give_the_same_meshes(variant):
    labels, ras_affine = _same_anatomy()
    reference = _lps_stats(label_meshes(Volume(labels, ras_affine)))
    if variant == "lps":
        # stored LPS: i runs to the left, j to posterior (flip both)
        array = labels[::-1, ::-1, :]
        new_to_old = affine(
            np.diag([-1.0, -1.0, 1.0]), (labels.shape[0] - 1, labels.shape[1] - 1, 0)
        )
    else:
        # new axes (k, i, j) with k reversed: an odd permutation and a flip
        array = np.transpose(labels, (2, 0, 1))[::-1]
        perm = np.array([[0, 1.0, 0], [0, 0, 1], [-1, 0, 0]])
        new_to_old = affine(perm, (0, 0, labels.shape[2] - 1))
    array = np.ascontiguousarray(array)
    idx = np.indices(array.shape).reshape(3, -1).T
    old = idx @ new_to_old[:3, :3].T + new_to_old[:3, 3]
    assert np.array_equal(array.reshape(-1), labels[tuple(old.round().astype(int).T)])
    moved = Volume(array, ras_affine @ new_to_old)
    found = _lps_stats(label_meshes(moved))
    assert sorted(found) == sorted(reference)
    for value in reference:
        # marching cubes splits mirrored cubes along other diagonals, so the
        # smoothed surfaces differ slightly; a fifth of a voxel (0.25 mm)
        np.testing.assert_allclose(found[value], reference[value], atol=0.25)
    # before smoothing the vertices (edge crossings) are the same points exactly
    raw = {"smoothing": 0.0, "decimate": 0.0, "preserve_volume": False}
    for a, b in zip(label_meshes(Volume(labels, ras_affine), **raw), label_meshes(moved, **raw)):
        pa, pb = (np.unique(m.vertices.round(6), axis=0) for m in (a, b))
        np.testing.assert_allclose(pa, pb, atol=1e-6)
        assert a.mesh_volume_mm3 == pytest.approx(b.mesh_volume_mm3, rel=1e-9)


def test_same_anatomy_on_an_oblique_grid_lands_in_the_same_place():
    labels, ras_affine = _same_anatomy()
    reference = _lps_stats(label_meshes(Volume(labels, ras_affine)))
    # Resample (nearest) onto a grid rotated 30 degrees, 1 mm voxels, covering the same anatomy.
    rot = rotation((1, 1, 0.5), 30)
    spacing = 1.0
    centre = ras_affine[:3, :3] @ (np.array(labels.shape) - 1) / 2 + ras_affine[:3, 3]
    shape = (80, 80, 80)
    obl = affine(rot * spacing, centre - rot @ ((np.array(shape) - 1) / 2 * spacing))
    to_old = np.linalg.inv(ras_affine) @ obl
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1)
    old = to_old[:3, :3] @ idx + to_old[:3, 3:4]
    array = ndimage.map_coordinates(labels, old, order=0, cval=0).reshape(shape)
    found = _lps_stats(label_meshes(Volume(array.astype(np.uint8), obl)))
    assert sorted(found) == sorted(reference)
    voxel = 1.25
    for value in reference:
        # bounds of a rotated nearest-neighbour copy: within one (source) voxel
        np.testing.assert_allclose(found[value][:2], reference[value][:2], atol=voxel)
        np.testing.assert_allclose(found[value][2], reference[value][2], atol=voxel / 2)


def test_lps_is_the_ras_position_with_x_and_y_negated():
    labels = ball((30, 30, 30), (10, 12, 14), (5, 6, 7))
    vol = Volume(labels, affine(np.diag([1.0, 1.0, 1.0]), (100.0, 50.0, -20.0)))
    (mesh,) = label_meshes(vol, smoothing=0.0, decimate=0.0, preserve_volume=False)
    ras_centre = vol.voxel_to_ras(np.argwhere(labels).mean(axis=0))[0]
    np.testing.assert_allclose(mesh.vertices.mean(axis=0), LPS @ ras_centre, atol=0.2)
    np.testing.assert_allclose(vol.lps_affine, LPS_TO_RAS @ vol.affine)


# -- labels, names, errors ----------------------------------------------------------


def test_label_selection_table_and_unknown_labels(caplog):
    labels = np.zeros((20, 20, 20), np.uint16)
    labels[2:8, 2:8, 2:8] = 5
    labels[10:16, 10:16, 10:16] = 300
    table = [Label(5, "liver", (200, 100, 80))]
    meshes = label_meshes(Volume(labels, np.eye(4)), table)
    assert [(m.label.value, m.label.name) for m in meshes] == [(5, "liver"), (300, "label_300")]
    assert "label 300 is not in the label table" in caplog.text
    only = label_meshes(Volume(labels, np.eye(4)), table, labels=[300, 7])
    assert [m.label.value for m in only] == [300]
    assert label_meshes(Volume(np.zeros((4, 4, 4), np.uint8), np.eye(4))) == []


def test_bad_label_maps_are_refused_with_the_reason():
    with pytest.raises(InputError, match="integer label map"):
        label_meshes(Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)))
    with pytest.raises(InputError, match="3D label map"):
        label_meshes(Volume(np.zeros((4, 4, 4, 2), np.uint8), np.eye(4)))
    with pytest.raises(InputError, match="negative"):
        label_meshes(Volume(-np.ones((4, 4, 4), np.int16), np.eye(4)))
    with pytest.raises(ValueError, match="decimate"):
        label_meshes(Volume(np.ones((4, 4, 4), np.uint8), np.eye(4)), decimate=1.0)


def test_file_names_are_sanitised_and_unique():
    assert mesh_file_name(Label(1, "left kidney", (0, 0, 0)), "stl") == "left_kidney.stl"
    assert mesh_file_name(Label(2, "../../etc/passwd", (0, 0, 0)), "obj") == "etc_passwd.obj"
    assert mesh_file_name(Label(3, "...", (0, 0, 0)), "ply") == "label_3.ply"
    taken = {"liver.stl"}
    assert mesh_file_name(Label(9, "Liver", (0, 0, 0)), "stl", taken) == "Liver_9.stl"


# -- files read back ----------------------------------------------------------------


def read_binary_stl(path: Path) -> tuple[bytes, np.ndarray]:
    """(80-byte header, (M, 3, 3) triangle vertices) without any mesh library."""
    data = path.read_bytes()
    count = int(np.frombuffer(data, "<u4", 1, 80)[0])
    record = np.dtype([("normal", "<f4", 3), ("vertex", "<f4", (3, 3)), ("attr", "<u2")])
    assert len(data) == 84 + count * record.itemsize
    return data[:80], np.frombuffer(data, record, count, 84)["vertex"]


def vtk_read(path: Path):
    """Read with the VTK reader Slicer's vtkMRMLModelStorageNode uses; also return
    the text it searches for SPACE= (header, comment, comments or field data)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkIOGeometry import vtkOBJReader, vtkSTLReader
    from vtkmodules.vtkIOPLY import vtkPLYReader
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    fmt = path.suffix[1:]
    reader = {
        "stl": vtkSTLReader,
        "obj": vtkOBJReader,
        "ply": vtkPLYReader,
        "vtp": vtkXMLPolyDataReader,
    }[fmt]()
    reader.SetFileName(str(path))
    reader.Update()
    poly = reader.GetOutput()
    if fmt == "stl":
        space = reader.GetHeader()
    elif fmt == "obj":
        space = reader.GetComment()
    elif fmt == "ply":
        comments = reader.GetComments()
        space = " ".join(comments.GetValue(i) for i in range(comments.GetNumberOfValues()))
    else:
        space = "SPACE=" + poly.GetFieldData().GetAbstractArray("SPACE").GetValue(0)
    points = numpy_support.vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64)
    faces = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    return points, faces, space


@pytest.fixture(scope="module")
def two_labels() -> Volume:
    labels = ball((36, 30, 28), (17, 14, 13), (12, 9, 8))
    labels[18:] *= 2
    return Volume(labels, GRIDS["oblique"])


def test_stl_is_binary_lps_with_space_in_header(tmp_path, two_labels):
    table = [Label(1, "left kidney", (1, 2, 3)), Label(2, "spleen", (4, 5, 6))]
    reports = write_meshes(tmp_path, two_labels, table)
    assert [r.path.name for r in reports] == ["left_kidney.stl", "spleen.stl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["left_kidney.stl", "spleen.stl"]
    for report in reports:
        header, tris = read_binary_stl(report.path)
        assert b"SPACE=LPS" in header
        assert not header.startswith(b"solid")
        np.testing.assert_allclose(tris, report.mesh.vertices[report.mesh.faces], atol=1e-4)
        points, faces, space = vtk_read(report.path)
        assert "SPACE=LPS" in space
        assert len(faces) == len(report.mesh.faces)
        assert is_watertight(faces)  # vtkSTLReader merged the points back
        assert mesh_volume(points, faces) == pytest.approx(report.mesh.mesh_volume_mm3, rel=1e-5)
        assert report.figures()["file"] == report.path.name


@pytest.mark.parametrize("fmt", ["obj", "ply", "vtp"])
def test_obj_ply_vtp_read_back_the_same_vertices(tmp_path, two_labels, fmt):
    (mesh,) = label_meshes(two_labels, labels=[2])
    path = write_mesh(tmp_path / f"spleen.{fmt}", mesh)
    points, faces, space = vtk_read(path)
    assert "SPACE=LPS" in space
    atol = 1e-4 if fmt != "obj" else 2e-6  # float32 in PLY/VTP, 6 decimals in OBJ
    np.testing.assert_allclose(points, mesh.vertices, atol=max(atol, 1e-4))
    np.testing.assert_array_equal(faces, mesh.faces)
    assert [p.name for p in tmp_path.iterdir()] == [f"spleen.{fmt}"]  # no temporary left


def test_unknown_format_is_refused(tmp_path, two_labels):
    (mesh,) = label_meshes(two_labels, labels=[1])
    with pytest.raises(FormatError, match="unknown mesh format 'off'"):
        write_mesh(tmp_path / "x.off", mesh)
    with pytest.raises(FormatError, match="choose one of stl, obj, ply, vtp"):
        write_meshes(tmp_path, two_labels, fmt="3mf")


# -- real data ------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["ct-abdomen", "mr-abdomen"])  # RAS and LPS on disk
def test_real_meshes_sit_on_their_voxels(shared_data, case):
    from medrecon.io.nifti import read_nifti

    folder = shared_data / case
    labels = read_nifti(folder / "labels.nii.gz")
    names = json.loads((folder / "labels.json").read_text())
    table = [Label(int(v), name, (128, 128, 128)) for v, name in names.items()]
    meshes = label_meshes(labels, table)
    present = set(np.unique(labels.array)) - {0}
    assert {m.label.value for m in meshes} == present
    voxel = max(labels.spacing)
    for mesh in meshes:
        ijk = np.argwhere(labels.array == mesh.label.value)
        lps = ijk @ labels.lps_affine[:3, :3].T + labels.lps_affine[:3, 3]
        lo, hi = lps.min(axis=0), lps.max(axis=0)
        np.testing.assert_allclose(
            mesh.vertices.min(axis=0), lo, atol=voxel, err_msg=mesh.label.name
        )
        np.testing.assert_allclose(
            mesh.vertices.max(axis=0), hi, atol=voxel, err_msg=mesh.label.name
        )
        assert mesh.watertight, mesh.label.name
        assert mesh_volume(mesh.vertices, mesh.faces) > 0
    liver = next(m for m in meshes if m.label.name == "liver")
    assert liver.watertight
    assert abs(liver.volume_change) < 1e-3
    assert abs(liver.smoothing_volume_change) < 0.02
    assert liver.figures()["smoothing_volume_change"] == liver.smoothing_volume_change


# -- what Slicer sees -----------------------------------------------------------------

SLICER_READ = r"""
import json, sys
import numpy as np
import slicer
scene = slicer.vtkMRMLScene()
out = {}
for path in sys.argv[1:]:
    node = scene.AddNewNodeByClass("vtkMRMLModelNode")
    storage = scene.AddNewNodeByClass("vtkMRMLModelStorageNode")
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(path)
    ok = storage.ReadData(node) == 1
    poly = node.GetPolyData()
    out[path] = {
        "ok": ok,
        "space": storage.GetCoordinateSystemTypeAsString(storage.GetCoordinateSystem()),
        "bounds": list(poly.GetBounds()) if poly is not None else None,
    }
print(json.dumps(out))
"""


def test_slicer_reads_every_format_in_lps(tmp_path, two_labels):
    python = os.environ.get("MEDRECON_SLICER_PYTHON")
    if not python:
        pytest.skip("MEDRECON_SLICER_PYTHON is not set (bash tests/slicer/setup_venv.sh VENV)")
    (mesh,) = label_meshes(two_labels, labels=[1])
    paths = [write_mesh(tmp_path / f"kidney.{fmt}", mesh) for fmt in ("stl", "obj", "ply", "vtp")]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [python, "-c", SLICER_READ, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    ras = mesh.vertices @ LPS.T  # Slicer holds models in RAS
    expected = np.column_stack([ras.min(axis=0), ras.max(axis=0)]).reshape(-1)
    for path in paths:
        result = found[str(path)]
        assert result["ok"], path
        assert result["space"] == "LPS", path
        np.testing.assert_allclose(result["bounds"], expected, atol=1e-3, err_msg=path.name)


def test_watertight_where_voxels_touch_only_along_an_edge():
    # Two cubes sharing one voxel edge, and two sharing one corner: surface nets
    # would leave non-manifold edges here; marching cubes keeps them closed.
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    labels[6:10, 6:10, 2:6] = 1
    labels[9:13, 9:13, 6:10] = 2
    labels[5:9, 5:9, 10:14] = 2
    for mesh in label_meshes(Volume(labels, np.eye(4)), decimate=0.5):
        assert mesh.watertight, mesh.label
        assert mesh.mesh_volume_mm3 == pytest.approx(mesh.voxel_volume_mm3, rel=0.01)


def test_watertight_check_finds_holes_and_flipped_faces():
    vol = Volume(ball((20, 20, 20), (9.5, 9.5, 9.5), (6, 6, 6)), np.eye(4))
    (mesh,) = label_meshes(vol)
    assert is_watertight(mesh.faces)
    assert not is_watertight(mesh.faces[1:])  # a hole
    flipped = mesh.faces.copy()
    flipped[0] = flipped[0, ::-1]
    assert not is_watertight(flipped)  # one face wound inward


def test_threads_give_the_same_meshes(two_labels):
    one = label_meshes(two_labels)
    two = label_meshes(two_labels, threads=2)
    assert [m.label.value for m in two] == [m.label.value for m in one]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)


def test_lewiner_non_manifold_case_falls_back_to_a_closed_surface():
    # 12 voxels cut from a lumpy blob where Lewiner's marching cubes shares
    # edges between four faces; the classic table closes it.
    from skimage.measure import marching_cubes

    labels = np.zeros((6, 6, 6), np.uint8)
    voxels = [(0, 2, 2), (0, 3, 3), (1, 1, 1), (1, 2, 2), (1, 3, 2), (1, 3, 3)]
    voxels += [(2, 1, 0), (2, 2, 1), (2, 3, 1), (2, 3, 2), (3, 2, 0), (3, 3, 1)]
    labels[tuple(np.array(voxels).T + 1)] = 1
    _, faces, _, _ = marching_cubes(np.pad(labels, 1), 0.5, method="lewiner")
    assert not is_watertight(faces)
    (mesh,) = label_meshes(Volume(labels, np.eye(4)), decimate=0.0)
    assert mesh.watertight
    assert mesh_volume(mesh.vertices, mesh.faces) > 0


# -- decimation: the fast quadric path and its checks ----------------------------------


@pytest.mark.parametrize("method", ["quadric", "pro"])
def test_each_decimator_keeps_the_sphere_exact(monkeypatch, method):
    if method == "quadric":
        pytest.importorskip("fast_simplification")
    # the path label_meshes takes where fast-simplification is (or is not) installed
    monkeypatch.setattr("medrecon.export.mesh.default_decimator", lambda: method)
    radius = 24.0
    vol = Volume(ball((56, 56, 56), (27.5, 27.5, 27.5), (radius,) * 3), np.eye(4))
    (whole,) = label_meshes(vol, decimate=0.0, preserve_volume=False)
    (mesh,) = label_meshes(vol, decimate=0.5, preserve_volume=False)
    assert mesh.mesh_volume_mm3 == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.02)
    assert mesh.area_mm2 == pytest.approx(4 * np.pi * radius**2, rel=0.02)
    assert mesh.watertight
    assert len(mesh.faces) <= 0.5 * len(whole.faces) * 1.05
    # every vertex stays on the undecimated surface: radius within 0.1 voxel
    r_whole = np.linalg.norm(whole.vertices - whole.vertices.mean(axis=0), axis=1)
    r_mesh = np.linalg.norm(mesh.vertices - whole.vertices.mean(axis=0), axis=1)
    assert r_mesh.min() > r_whole.min() - 0.1
    assert r_mesh.max() < r_whole.max() + 0.1


def test_decimation_keeps_a_one_voxel_island():
    # Quadric edge collapse removes a one-voxel island of a label outright
    # (Euler characteristic 4 -> 2); label_meshes then takes vtkDecimatePro.
    labels = ball((48, 48, 48), (20.0, 20.0, 20.0), (16.0,) * 3)
    labels[42, 42, 42] = 1
    verts, faces = smooth_mesh(*_raw_surface(labels), 0.5)
    assert euler_characteristic(faces) == 4  # two spheres
    if default_decimator() == "quadric":
        fewer = decimate_mesh(verts, faces, 0.5, "quadric")
        assert euler_characteristic(fewer[1]) == 2  # the island is gone
    (mesh,) = label_meshes(Volume(labels, np.eye(4)), decimate=0.5)
    assert mesh.watertight
    assert euler_characteristic(mesh.faces) == 4
    assert mesh.vertices[:, 2].max() == pytest.approx(42.0, abs=0.5)  # the island's voxel


def _raw_surface(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from skimage.measure import marching_cubes

    verts, faces, _, _ = marching_cubes(np.pad(labels, 1), 0.5, gradient_direction="ascent")
    return verts - 1.0, faces.astype(np.int64)


def test_euler_characteristic_of_sphere_and_torus():
    grid = np.indices((40, 40, 20), dtype=np.float64)
    ring = np.hypot(grid[0] - 19.5, grid[1] - 19.5)
    torus = ((ring - 12.0) ** 2 + (grid[2] - 9.5) ** 2 <= 4.5**2).astype(np.uint8)
    assert euler_characteristic(_raw_surface(torus)[1]) == 0
    sphere = ball((20, 20, 20), (9.5, 9.5, 9.5), (7.0,) * 3)
    assert euler_characteristic(_raw_surface(sphere)[1]) == 2


@pytest.mark.parametrize("offset", [0.3, -0.2])
def test_volume_restore_finds_a_known_offset_exactly(offset):
    # The volume of verts + d * normals is a cubic in d: the restore solves it.
    verts, faces = smooth_mesh(*_raw_surface(ball((30,) * 3, (14.5,) * 3, (10.0,) * 3)), 0.5)
    target = mesh_volume(verts + offset * vertex_normals(verts, faces), faces)
    moved, found = restore_volume(verts, faces, target, max_offset_mm=0.5)
    assert found == pytest.approx(offset, abs=1e-9)
    assert mesh_volume(moved, faces) == pytest.approx(target, rel=1e-12)
    _, capped = restore_volume(verts, faces, target, max_offset_mm=0.1)
    assert capped == pytest.approx(np.sign(offset) * 0.1)
