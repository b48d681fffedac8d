"""Time loading a large CT series: medrecon vs SimpleITK vs dcm2niix.

Builds (once, cached in ``--workdir``) an N-slice 512x512 CT series from the
real 28-slice series ``../shared/data/dicom/ct-philips-axial`` (pixels of
source slice ``k % 28``, new UIDs, 1 mm slice steps, shuffled random file
names, Explicit VR Little Endian), then times, interleaved round by round:

  A  medrecon.load(folder)
  B  SimpleITK ImageSeriesReader: GetGDCMSeriesFileNames + Execute()
  C  dcm2niix -z n -o TMPDIR folder (subprocess, fresh output folder each run)

All runs read from a warm OS page cache (dropping it needs root); the first,
untimed warm-up round pulls every file into the cache.
``--cli`` / ``--cli-only``: also / only whole info/convert processes vs dcm2niix (cli_timing.py).

Run from the repository root::

    python benchmarks/bench_load.py [--slices 500] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cli_timing import add_arguments, run_cli  # beside this script

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO.parent / "shared" / "data" / "dicom" / "ct-philips-axial"
DEFAULT_WORKDIR = REPO / "benchmarks" / "_work"
SLICE_STEP_MM = 1.0
GOAL_VS_SITK = 1.0
GOAL_VS_DCM2NIIX = 1.5


# --------------------------------------------------------------------------- build


def _source_slices(source: Path) -> list:
    """The source CT slices as pydicom datasets, sorted along the slice normal."""
    import pydicom

    slices = []
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # DIRFILE and other non-image files are skipped
            continue
        if "PixelData" not in ds or "ImagePositionPatient" not in ds:
            continue
        slices.append(ds)
    if not slices:
        sys.exit(f"bench_load: no CT image slices found in {source}")
    normal = _normal(slices[0])
    slices.sort(key=lambda ds: float(np.dot(normal, [float(x) for x in ds.ImagePositionPatient])))
    return slices


def _normal(ds) -> np.ndarray:
    iop = np.array([float(x) for x in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def build_series(source: Path, folder: Path, n_slices: int, seed: int = 0) -> Path:
    """Write the N-slice series into ``folder`` unless a complete one is already there."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    manifest = folder / "_manifest.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        if info.get("slices") == n_slices and len(list(folder.glob("*.dcm"))) == n_slices:
            return folder
    if not source.is_dir():
        sys.exit(
            f"bench_load: source series {source} not found. The benchmark builds its "
            "test series from ../shared/data/dicom/ct-philips-axial (relative to the repo root)."
        )
    sources = _source_slices(source)
    for ds in sources:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
    normal = _normal(sources[0])
    origin = np.array([float(x) for x in sources[0].ImagePositionPatient])
    series_uid = generate_uid()
    rng = random.Random(seed)
    names = [f"{rng.getrandbits(64):016x}.dcm" for _ in range(n_slices)]
    rng.shuffle(names)

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    print(f"building {n_slices}-slice series in {folder} ...", flush=True)
    t0 = time.perf_counter()
    for k in range(n_slices):
        ds = sources[k % len(sources)]
        sop_uid = generate_uid()
        pos = origin + k * SLICE_STEP_MM * normal
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = f"medrecon bench {n_slices} slices"
        ds.ImagePositionPatient = [f"{x:.4f}" for x in pos]
        ds.SliceLocation = f"{float(np.dot(normal, pos)):.4f}"
        ds.InstanceNumber = k + 1
        ds.SliceThickness = SLICE_STEP_MM
        if "SpacingBetweenSlices" in ds:
            ds.SpacingBetweenSlices = SLICE_STEP_MM
        pydicom.dcmwrite(tmp / names[k], ds, enforce_file_format=True)
    (tmp / "_manifest.json").write_text(
        json.dumps({"slices": n_slices, "source": str(source), "series_uid": series_uid})
    )
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    print(f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    return folder


# --------------------------------------------------------------------------- readers


def read_medrecon(folder: Path):
    import medrecon

    return medrecon.load(folder)


def read_sitk(folder: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _dcm2niix() -> str:
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    if not Path(exe).is_file():
        sys.exit("bench_load: dcm2niix not found (pip install dcm2niix)")
    return exe


def run_dcm2niix(folder: Path, exe: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_dcm2niix_") as out:
        subprocess.run(
            [exe, "-z", "n", "-o", out, str(folder)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


# --------------------------------------------------------------------------- checks


def check_arrays(folder: Path) -> dict:
    """medrecon's (i, j, k) array against SimpleITK's (k, j, i) array."""
    import SimpleITK as sitk

    vol = read_medrecon(folder)
    ref = sitk.GetArrayFromImage(read_sitk(folder)).transpose(2, 1, 0)
    same_shape = vol.array.shape == ref.shape
    equal = same_shape and vol.array.dtype == ref.dtype and np.array_equal(vol.array, ref)
    return {
        "ok": bool(equal),
        "medrecon_shape": list(vol.array.shape),
        "sitk_shape": list(ref.shape),
        "medrecon_dtype": str(vol.array.dtype),
        "sitk_dtype": str(ref.dtype),
        "warnings": list(vol.meta.warnings),
    }


# A forked child starts with its parent's peak RSS on Linux (it survives exec), so
# the benchmark process (hundreds of MiB by then) starts a lean runner that only
# starts the loader and waits for it; the runner's RUSAGE_CHILDREN then covers the
# loader (and its header-reading worker processes: the largest of them).
_RUNNER = r"""
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout
last = (out.strip().splitlines() or [""])[-1]
print(json.dumps({"children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "load": json.loads(last) if last.startswith("{") else {}}))
"""

_LOAD = r"""
import json, resource, sys
kind, folder = sys.argv[1], sys.argv[2]
import numpy
if kind == "medrecon":
    import medrecon
else:
    import SimpleITK as sitk
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if kind == "medrecon":
    medrecon.load(folder)
else:
    r = sitk.ImageSeriesReader()
    r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder))
    r.Execute()
print(json.dumps({"after_imports_kib": base,
                  "self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "workers_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def peak_rss(kind: str, folder: Path, exe: str) -> dict:
    """Peak resident memory (MiB) of one load in a fresh child process (Linux ru_maxrss)."""
    if kind == "dcm2niix":
        out_dir = tempfile.mkdtemp(prefix="bench_dcm2niix_")
        target = [exe, "-z", "n", "-o", out_dir, str(folder)]
    else:
        out_dir = None
        target = [sys.executable, "-c", _LOAD, kind, str(folder)]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER, *target], check=True, capture_output=True, text=True
        )
    finally:
        if out_dir:
            shutil.rmtree(out_dir, ignore_errors=True)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    load = info["load"]
    return {
        "peak_mib": info["children_kib"] / 1024,
        "loader_mib": load["self_kib"] / 1024 if load else None,
        "after_imports_mib": load["after_imports_kib"] / 1024 if load else None,
        "workers_mib": load["workers_kib"] / 1024 if load else None,
    }


# --------------------------------------------------------------------------- timing


def time_rounds(folder: Path, repeats: int, exe: str) -> dict[str, list[float]]:
    runners = {
        "medrecon": lambda: read_medrecon(folder),
        "SimpleITK": lambda: read_sitk(folder),
        "dcm2niix": lambda: run_dcm2niix(folder, exe),
    }
    for fn in runners.values():  # warm-up: imports, page cache
        fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - t0)
            del result
        print(
            f"round {r + 1}/{repeats}: " + "  ".join(f"{n} {t[-1]:.3f}s" for n, t in times.items()),
            flush=True,
        )
    return times


def versions(exe: str) -> dict[str, str]:
    import pydicom
    import SimpleITK as sitk

    import medrecon

    proc = subprocess.run([exe, "-v"], capture_output=True, text=True)
    line = next((ln for ln in (proc.stdout + proc.stderr).splitlines() if "version" in ln), "")
    return {
        "python": platform.python_version(),
        "medrecon": getattr(medrecon, "__version__", "?"),
        "pydicom": pydicom.__version__,
        "SimpleITK": sitk.Version_VersionString(),
        "numpy": np.__version__,
        "dcm2niix": line.strip(),
    }


def machine() -> dict[str, str | int]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
            "",
        )
    except OSError:
        pass
    return {"cpus": os.cpu_count() or 0, "cpu_model": model or platform.processor()}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=500, help="slices in the test series (500)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up (5)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="cache folder")
    p.add_argument("--source", type=Path, default=SOURCE, help="real CT series to copy from")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the figures as JSON")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-memory probes")
    add_arguments(p)
    args = p.parse_args(argv)
    if args.slices < 2 or args.repeats < 1:
        p.error("--slices must be >= 2 and --repeats >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exe = _dcm2niix()
    info = {"machine": machine(), "versions": versions(exe)}
    print(f"machine: {info['machine']['cpus']} CPUs, {info['machine']['cpu_model']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    if args.cli_only:
        run_cli(args, exe, info)
        return 0
    folder = build_series(args.source, args.workdir / f"ct-{args.slices}", args.slices)
    info["folder"] = str(folder)
    print(f"series: {args.slices} slices of 512x512 int16 in {folder} (warm page cache)")

    check = check_arrays(folder)
    print(
        f"array check medrecon vs SimpleITK: {'OK' if check['ok'] else 'MISMATCH'} "
        f"(medrecon {tuple(check['medrecon_shape'])} {check['medrecon_dtype']}, "
        f"SimpleITK transposed {tuple(check['sitk_shape'])} {check['sitk_dtype']})"
    )

    times = time_rounds(folder, args.repeats, exe)
    stats = {
        name: {"median_s": statistics.median(t), "min_s": min(t), "runs_s": t}
        for name, t in times.items()
    }
    med = stats["medrecon"]["median_s"]
    ratios = {
        "medrecon/SimpleITK": med / stats["SimpleITK"]["median_s"],
        "medrecon/dcm2niix": med / stats["dcm2niix"]["median_s"],
    }
    goals = {
        "medrecon/SimpleITK": ratios["medrecon/SimpleITK"] <= GOAL_VS_SITK,
        "medrecon/dcm2niix": ratios["medrecon/dcm2niix"] <= GOAL_VS_DCM2NIIX,
    }

    print(f"\n{'reader':<12}{'median s':>10}{'min s':>10}")
    for name, s in stats.items():
        print(f"{name:<12}{s['median_s']:>10.3f}{s['min_s']:>10.3f}")
    print(
        f"ratio medrecon/SimpleITK {ratios['medrecon/SimpleITK']:.2f} "
        f"(goal <= {GOAL_VS_SITK}: {'met' if goals['medrecon/SimpleITK'] else 'NOT met'})"
    )
    print(
        f"ratio medrecon/dcm2niix  {ratios['medrecon/dcm2niix']:.2f} "
        f"(goal <= {GOAL_VS_DCM2NIIX}: {'met' if goals['medrecon/dcm2niix'] else 'NOT met'})"
    )

    rss = {}
    if not args.no_rss:
        for kind in ("medrecon", "SimpleITK", "dcm2niix"):
            rss[kind] = peak_rss(kind, folder, exe)
        print("\npeak RSS of one load in a fresh child process (RUSAGE_CHILDREN):")
        for kind, r in rss.items():
            extra = ""
            if r["loader_mib"] is not None:
                extra = (
                    f"  (loader {r['loader_mib']:.0f} MiB, of which imports "
                    f"{r['after_imports_mib']:.0f} MiB; largest worker {r['workers_mib']:.0f} MiB)"
                )
            print(f"  {kind:<10}{r['peak_mib']:>7.0f} MiB{extra}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {
            **info,
            "slices": args.slices,
            "repeats": args.repeats,
            "array_check": check,
            "timings": stats,
            "ratios": ratios,
            "goals_met": goals,
            "peak_rss": rss,
        }
        args.json.write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    if args.cli:
        run_cli(args, exe, info)
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
