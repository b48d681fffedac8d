"""Label statistics on shapes with exact answers, and on the real abdominal CT."""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest

from medrecon.errors import InputError
from medrecon.export.stats import COLUMNS, label_statistics, mesh_area_mm2, write_stats
from medrecon.labels import Label
from medrecon.labels.terminology import describe
from medrecon.volume import Volume

BOX = Label(1, "box", (255, 0, 0))
BALL = Label(2, "ball", (0, 255, 0))
NONE = Label(3, "absent", (0, 0, 255))


def box_volume(affine: np.ndarray) -> Volume:
    array = np.zeros((20, 30, 40), dtype=np.uint8)
    array[2:6, 10:13, 5:15] = 1  # 4 x 3 x 10 voxels
    return Volume(array, affine)


def test_box_count_volume_centroid_bbox_are_exact():
    affine = np.array([[2.0, 0, 0, 10], [0, 0.5, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]])
    (row,) = label_statistics(box_volume(affine), None, (BOX,))
    assert row["voxel_count"] == 120
    assert row["volume_ml"] == pytest.approx(120 * 2 * 0.5 * 3 / 1000, rel=1e-12)
    # centre voxel (3.5, 11, 9.5) -> RAS
    assert [row[f"centroid_ras_{a}"] for a in "xyz"] == pytest.approx([17.0, -14.5, 33.5])
    assert [row[f"centroid_lps_{a}"] for a in "xyz"] == pytest.approx([-17.0, 14.5, 33.5])
    assert [row[f"bbox_min_{a}"] for a in "ijk"] == [2, 10, 5]
    assert [row[f"bbox_max_{a}"] for a in "ijk"] == [5, 12, 14]
    # outer faces: i 1.5..5.5, j 9.5..12.5, k 4.5..14.5
    assert [row[f"bbox_ras_min_{a}"] for a in "xyz"] == pytest.approx([13.0, -15.25, 18.5])
    assert [row[f"bbox_ras_max_{a}"] for a in "xyz"] == pytest.approx([21.0, -13.75, 48.5])
    assert row["mean"] is None and set(row) == set(COLUMNS)


def test_lps_affine_flips_ras_signs_of_x_and_y():
    ras = np.diag([1.5, 1.5, 2.0, 1.0])
    lps_oriented = np.diag([-1.5, -1.5, 2.0, 1.0])  # same voxels, axes pointing L and P
    (a,) = label_statistics(box_volume(ras), None, (BOX,))
    (b,) = label_statistics(box_volume(lps_oriented), None, (BOX,))
    for axis in "xy":
        assert b[f"centroid_ras_{axis}"] == pytest.approx(-a[f"centroid_ras_{axis}"])
        assert b[f"centroid_lps_{axis}"] == pytest.approx(a[f"centroid_ras_{axis}"])
        assert b[f"bbox_ras_min_{axis}"] == pytest.approx(-a[f"bbox_ras_max_{axis}"])
    assert b["centroid_ras_z"] == a["centroid_ras_z"] == b["centroid_lps_z"]
    assert b["volume_ml"] == a["volume_ml"]


def test_intensities_are_exact():
    labels = box_volume(np.eye(4))
    rng = np.random.default_rng(0)
    image = rng.integers(-1000, 2000, size=labels.shape).astype(np.int16)
    (row,) = label_statistics(labels, labels.with_array(image), (BOX,))
    values = image[labels.array == 1].astype(np.float64)
    assert row["mean"] == values.mean()
    assert row["std"] == values.std()
    assert (row["min"], row["max"]) == (values.min(), values.max())


def _ball(radius_mm: float, spacing: tuple[float, float, float]) -> Volume:
    shape = tuple(int(2 * radius_mm / s) + 8 for s in spacing)
    grid = np.indices(shape, dtype=np.float64)
    centre = [(n - 1) / 2 for n in shape]
    dist2 = sum(((grid[a] - centre[a]) * spacing[a]) ** 2 for a in range(3))
    affine = np.diag([*spacing, 1.0])
    return Volume((dist2 <= radius_mm**2).astype(np.uint8) * 2, affine)


@pytest.mark.parametrize(
    ("radius", "spacing", "tolerance"),
    [(20.0, (1.0, 1.0, 1.0), 0.01), (16.0, (0.8, 0.8, 0.8), 0.01), (15.0, (0.8, 0.8, 2.0), 0.03)],
)
def test_sphere_area_from_smoothed_marching_cubes(radius, spacing, tolerance):
    (row,) = label_statistics(_ball(radius, spacing), None, (BALL,))
    assert row["surface_area_mm2"] == pytest.approx(4 * math.pi * radius**2, rel=tolerance)
    assert row["volume_ml"] == pytest.approx(4 / 3 * math.pi * radius**3 / 1000, rel=0.01)


def test_sphere_area_within_two_percent_on_the_default_grid():
    (row,) = label_statistics(_ball(20.0, (1.0, 1.0, 1.0)), None, (BALL,))
    assert abs(row["surface_area_mm2"] / (4 * math.pi * 400) - 1) < 0.02


def test_area_follows_an_oblique_affine():
    ball = _ball(12.0, (1.0, 1.0, 1.0))
    angle = 0.4
    rotation = np.array(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    )
    oblique = ball.affine.copy()
    oblique[:3, :3] = rotation @ ball.affine[:3, :3]
    (a,) = label_statistics(ball, None, (BALL,))
    (b,) = label_statistics(Volume(ball.array, oblique), None, (BALL,))
    assert b["surface_area_mm2"] == pytest.approx(a["surface_area_mm2"], rel=1e-9)


def test_unit_cube_mesh_area():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    assert mesh_area_mm2(verts, faces) == pytest.approx(1.5 + math.sqrt(3) / 2)


def test_absent_labels_are_left_out_or_listed_with_zero(caplog):
    labels = box_volume(np.eye(4))
    labels.array[0, 0, 0] = 9  # a value the table does not name: logged, not measured
    assert [r["name"] for r in label_statistics(labels, None, (BOX, NONE))] == ["box"]
    rows = label_statistics(labels, None, (NONE, BOX), include_absent=True)
    assert [r["name"] for r in rows] == ["box", "absent"]
    assert rows[1]["voxel_count"] == 0 and rows[1]["centroid_ras_x"] is None
    assert "[9]" in caplog.text


def test_mismatched_image_grid_is_an_error():
    labels = box_volume(np.eye(4))
    with pytest.raises(InputError, match="same 3D grid"):
        label_statistics(labels, Volume(np.zeros((5, 5, 5)), np.eye(4)), (BOX,))
    with pytest.raises(InputError, match="different affines"):
        label_statistics(labels, Volume(labels.array, np.diag([2.0, 1, 1, 1])), (BOX,))


def test_write_stats_csv_and_json_round_trip(tmp_path):
    labels = box_volume(np.diag([0.7, 0.7, 2.5, 1.0]))
    image = labels.with_array(labels.array.astype(np.int16) * 50 - 10)
    rows = label_statistics(labels, image, (BOX, NONE), include_absent=True)
    csv_path, json_path = write_stats(
        tmp_path / "stats.csv", tmp_path / "stats.json", rows, meta={"intensity_unit": "HU"}
    )
    with open(csv_path, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(COLUMNS)
    assert float(table[0]["volume_ml"]) == rows[0]["volume_ml"]
    assert float(table[0]["mean"]) == 40.0 and table[1]["mean"] == ""
    document = json.loads(json_path.read_text())
    assert document["meta"] == {"intensity_unit": "HU"}
    assert document["units"]["volume_ml"] == "mL"
    assert document["labels"] == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.csv", "stats.json"]


def _exposed_faces(mask: np.ndarray) -> int:
    """Voxel faces between the mask and the outside (padded), on all three axes."""
    padded = np.pad(mask, 1)
    return int(sum(np.count_nonzero(np.diff(padded, axis=a)) for a in range(3)))


def test_real_ct_liver_volume_and_hu(shared_data):
    data = shared_data / "ct-abdomen"
    ct = Volume.from_nibabel(nib.load(data / "ct.nii.gz"))
    labels = Volume.from_nibabel(nib.load(data / "labels.nii.gz"))
    names = json.loads((data / "labels.json").read_text())
    table = tuple(describe(name, int(value)) for value, name in names.items())
    rows = {row["name"]: row for row in label_statistics(labels, ct, table)}
    liver = rows["liver"]
    count = int(np.count_nonzero(labels.array == 5))
    assert liver["voxel_count"] == count
    assert liver["volume_ml"] == pytest.approx(count * 27 / 1000, rel=1e-12)  # 3 mm voxels
    assert 800 < liver["volume_ml"] < 3000  # an adult liver
    assert 30 < liver["mean"] < 150  # soft tissue HU
    # RAS +x is the patient's right: the liver lies right of the spleen
    assert liver["centroid_ras_x"] > rows["spleen"]["centroid_ras_x"]
    assert liver["centroid_lps_x"] < rows["spleen"]["centroid_lps_x"]
    assert len(rows) == len(np.unique(labels.array)) - 1
    for row in (r for r in rows.values() if r["voxel_count"] >= 100):
        # No shape of that volume has less area than a sphere (isoperimetric inequality),
        # and the smoothed surface lies inside the voxels' blocky one, so has less area.
        volume_mm3 = row["volume_ml"] * 1000
        sphere = (36 * np.pi * volume_mm3**2) ** (1 / 3)
        blocky = _exposed_faces(labels.array == row["value"]) * 9.0  # 3 x 3 mm faces
        assert sphere <= row["surface_area_mm2"] < blocky, row["name"]
    # Below ~100 voxels the marching-cubes surface is no longer close to the voxels'
    # volume (a single voxel is a small octahedron, shrunk further by smoothing).
