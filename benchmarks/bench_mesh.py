"""All-label meshes of a 512^3 label map with 20 organ-like labels.

medrecon's path (``label_meshes``: one find_objects pass, per-label
scikit-image marching cubes in the label's box, windowed-sinc smoothing,
quadric decimation with vtkDecimatePro where it would change the topology,
volume restore; also run as it does without the ``fast-simplification``
package, vtkDecimatePro only) against

- per-label scikit-image marching cubes on the whole volume (``labels == v``,
  the usual loop), and
- VTK's ``vtkSurfaceNets3D`` on all labels in one pass (with and without its
  own smoothing), then split into per-label closed meshes in NumPy,

interleaved round by round after one warm-up each. The label map is
synthetic: 20 lumpy, randomly rotated ellipsoids (semi-axes 5-14 % of the
side, later ones overwriting earlier ones where they meet, as organs touch),
seeded, built once and cached under ``benchmarks/_work/``. Quality per
method: watertight labels (every edge in exactly two faces), volume change
against the voxel volume, and the relative area change against the smoothed
reference.

    python benchmarks/bench_mesh.py                   # 512^3, 20 labels, 3 rounds
    python benchmarks/bench_mesh.py --size 256 --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medrecon.export.mesh import label_meshes
from medrecon.export.mesh_filters import is_watertight, mesh_area, mesh_volume
from medrecon.volume import Volume

WORKDIR = Path(__file__).resolve().parent / "_work"


def organ_blobs(size: int, n_labels: int, seed: int = 0) -> np.ndarray:
    """Lumpy rotated ellipsoids on a size^3 grid; later labels overwrite earlier ones."""
    rng = np.random.default_rng(seed)
    shape = np.array((size, size, size))
    labels = np.zeros(shape, np.uint8)
    for value in range(1, n_labels + 1):
        radii = rng.uniform(0.05, 0.14, 3) * shape
        centre = rng.uniform(0.2, 0.8, 3) * shape
        rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        reach = np.ceil(radii.max() * 1.25)
        lo = np.maximum(np.floor(centre - reach), 0).astype(int)
        hi = np.minimum(np.ceil(centre + reach), shape).astype(int)
        axes = [np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1) - centre.astype(np.float32)
        u = grid @ rot.astype(np.float32) / radii.astype(np.float32)
        k = rng.normal(size=(2, 3)).astype(np.float32) * 2
        bumps = 0.12 * np.sin(u @ k[0] + rng.uniform(0, 6)) + 0.08 * np.sin(
            u @ k[1] + rng.uniform(0, 6)
        )
        inside = np.sqrt((u**2).sum(-1)) <= 1 + bumps
        labels[tuple(slice(a, b) for a, b in zip(lo, hi))][inside] = value
    return labels


def cached_blobs(size: int, n_labels: int) -> np.ndarray:
    path = WORKDIR / f"blobs-{size}-{n_labels}.npy"
    if path.is_file():
        return np.load(path)
    labels = organ_blobs(size, n_labels)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    np.save(path, labels)
    return labels


# -- contenders: each returns [(value, vertices, faces)] ---------------------------------


def ours(vol: Volume, **options) -> list:
    return [(m.label.value, m.vertices, m.faces) for m in label_meshes(vol, **options)]


@contextlib.contextmanager
def without_quadric():
    """As on a machine without fast-simplification: label_meshes decimates with
    vtkDecimatePro only (the path before quadric decimation)."""
    saved = sys.modules.get("fast_simplification")
    sys.modules["fast_simplification"] = None  # import now raises ImportError
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["fast_simplification"]
        else:
            sys.modules["fast_simplification"] = saved


def ours_pro_only(vol: Volume, **options) -> list:
    with without_quadric():
        return ours(vol, **options)


def to_mm(vol: Volume, ijk: np.ndarray) -> np.ndarray:
    return ijk @ vol.affine[:3, :3].T + vol.affine[:3, 3]


def skimage_whole_volume(vol: Volume, values: list[int]) -> list:
    """The usual loop: marching cubes of ``labels == v`` over the whole volume."""
    from skimage.measure import marching_cubes

    out = []
    for value in values:
        verts, faces, _, _ = marching_cubes(
            np.pad(vol.array == value, 1), 0.5, gradient_direction="ascent"
        )
        out.append((value, to_mm(vol, verts - 1.0), faces))
    return out


def surface_nets(vol: Volume, values: list[int], smooth: bool, threads: int) -> list:
    """vtkSurfaceNets3D, all labels in one pass, split into closed per-label meshes."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkSMPTools
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkSurfaceNets3D

    array = vol.array  # C order: VTK sees x = k, z = i
    image = vtkImageData()
    image.SetDimensions(*array.shape[::-1])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.reshape(-1), deep=False))
    nets = vtkSurfaceNets3D()
    nets.SetInputData(image)
    nets.SetNumberOfLabels(len(values))
    for i, value in enumerate(values):
        nets.SetLabel(i, value)
    nets.SetOutputMeshTypeToTriangles()
    nets.SetSmoothing(smooth)
    vtkSMPTools.SetBackend("STDThread")
    vtkSMPTools.Initialize(threads)
    nets.Update()
    poly = nets.GetOutput()
    points = numpy_support.vtk_to_numpy(poly.GetPoints().GetData())[:, ::-1].astype(np.float64)
    tris = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    tris = tris[:, ::-1]  # the x/z swap mirrored the winding
    pair = numpy_support.vtk_to_numpy(poly.GetCellData().GetArray("BoundaryLabels"))
    out = []
    for value in values:
        faces = np.concatenate([tris[pair[:, 0] == value], tris[pair[:, 1] == value][:, ::-1]])
        used = np.zeros(len(points), bool)
        used[faces] = True
        out.append((value, to_mm(vol, points[used]), (np.cumsum(used) - 1)[faces]))
    return out


# -- measuring ------------------------------------------------------------------------


def quality(meshes: list, vol: Volume, voxels: np.ndarray) -> dict:
    """Watertight count, volume change against the voxel volume, areas (all in mm)."""
    scale = abs(np.linalg.det(vol.affine[:3, :3]))
    changes, areas, closed = [], {}, 0
    for value, verts, faces in meshes:
        # |volume|: an affine with det < 0 would flip the sign of unflipped peers
        changes.append(abs(mesh_volume(verts, faces)) / (voxels[value] * scale) - 1)
        areas[value] = mesh_area(verts, faces)
        closed += is_watertight(np.asarray(faces, np.int64))
    return {
        "labels": len(meshes),
        "watertight": closed,
        "faces": int(sum(len(f) for _, _, f in meshes)),
        "volume_change_median": float(np.median(changes)),
        "volume_change_worst": float(max(changes, key=abs)),
        "areas": areas,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--labels", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    array = cached_blobs(args.size, args.labels)
    print(f"label map {array.shape} uint8, {args.labels} labels ({time.perf_counter() - t0:.1f} s)")
    vol = Volume(array, np.diag([0.8, 0.8, 0.8, 1.0]))  # 0.8 mm isotropic
    voxels = np.zeros(256, np.int64)
    for k in range(0, array.shape[0], 32):
        voxels += np.bincount(array[k : k + 32].reshape(-1), minlength=256)
    values = [int(v) for v in np.flatnonzero(voxels[1:]) + 1]

    n = args.threads
    contenders: dict[str, Callable[[], list]] = {
        "medrecon full (1 thread)": lambda: ours(vol),
        f"medrecon full ({n} threads)": lambda: ours(vol, threads=n),
        "medrecon full, vtkDecimatePro only (1 thread)": lambda: ours_pro_only(vol),
        "medrecon smooth, no decimation": lambda: ours(vol, decimate=0.0, threads=n),
        "medrecon extraction only": lambda: ours(
            vol, smoothing=0.0, decimate=0.0, preserve_volume=False
        ),
        "skimage MC, whole volume per label": lambda: skimage_whole_volume(vol, values),
        f"VTK SurfaceNets3D ({n} threads)": lambda: surface_nets(vol, values, False, n),
        f"VTK SurfaceNets3D + its smoothing ({n} threads)": lambda: surface_nets(
            vol, values, True, n
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    # CPU seconds of this process: on a shared machine they move less than wall time.
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    results = {}
    for name, run in contenders.items():  # warm-up, and the quality figures
        results[name] = quality(run(), vol, voxels)
    for _ in range(args.repeats):
        for name, run in contenders.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    reference = results[f"medrecon full ({n} threads)"]["areas"]
    load = os.getloadavg()
    print(
        f"\n{args.repeats} rounds, load average {load[0]:.2f} (1 min) {load[1]:.2f} (5 min), "
        f"{os.cpu_count()} CPUs; fast-simplification: {_quadric_version()}"
    )
    header = f"{'method':<48} {'median s':>9} {'min s':>7} {'cpu s':>7} {'watertight':>10} "
    header += f"{'faces':>9} "
    print(header + f"{'dV median':>10} {'dV worst':>9} {'dA median':>9}")
    for name in contenders:
        q = results[name]
        area_change = np.median([q["areas"][v] / reference[v] - 1 for v in reference])
        q["area_change_vs_ours_median"] = float(area_change)
        print(
            f"{name:<48} {statistics.median(times[name]):9.2f} {min(times[name]):7.2f} "
            f"{statistics.median(cpu[name]):7.2f} {q['watertight']:>6}/{q['labels']:<3} "
            f"{q['faces']:9d} "
            f"{q['volume_change_median']:10.4f} {q['volume_change_worst']:9.3f} {area_change:9.3f}"
        )
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    full, extract = med[f"medrecon full ({n} threads)"], med["medrecon extraction only"]
    ratios = {
        "full / vtkDecimatePro-only full (1 thread)": med["medrecon full (1 thread)"]
        / med["medrecon full, vtkDecimatePro only (1 thread)"],
        "full / vtkDecimatePro-only full, CPU s (1 thread)": med_cpu["medrecon full (1 thread)"]
        / med_cpu["medrecon full, vtkDecimatePro only (1 thread)"],
        "full / skimage whole-volume MC": full / med["skimage MC, whole volume per label"],
        "full / SurfaceNets3D": full / med[f"VTK SurfaceNets3D ({n} threads)"],
        "extraction / skimage whole-volume MC": extract / med["skimage MC, whole volume per label"],
        "extraction / SurfaceNets3D": extract / med[f"VTK SurfaceNets3D ({n} threads)"],
        "extraction / SurfaceNets3D + smoothing": extract
        / med[f"VTK SurfaceNets3D + its smoothing ({n} threads)"],
    }
    print("\nratios of medians")
    for name, value in ratios.items():
        print(f"  {name:<50} {value:6.2f}")
    verdict = "met" if full <= 2 else "not met"
    print(
        f"goal: medrecon full <= 2 s on 2 cores: {verdict} here ({full:.2f} s wall, "
        f"{med_cpu[f'medrecon full ({n} threads)']:.2f} CPU s; 1 thread "
        f"{med_cpu['medrecon full (1 thread)']:.2f} CPU s, load average {load[0]:.2f})"
    )
    if args.json:
        for q in results.values():
            q.pop("areas")
        record = {
            "size": args.size,
            "labels": args.labels,
            "repeats": args.repeats,
            "times_s": times,
            "cpu_s": cpu,
            "quality": results,
            "ratios": ratios,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "load_average": load,
                "fast_simplification": _quadric_version(),
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _quadric_version() -> str:
    try:
        from importlib.metadata import version

        return version("fast-simplification")
    except Exception:  # not installed: label_meshes uses vtkDecimatePro only
        return "not installed"


if __name__ == "__main__":
    raise SystemExit(main())
