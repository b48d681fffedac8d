"""A MONAI bundle run by medrecon's bundle engine vs by ``python -m monai.bundle run``.

Input: the real CT ``../shared/data/ct-abdomen/ct.nii.gz`` resampled onto
512x512x300 (``bench_infer.make_volume``), written once as NIfTI. Bundle: a
model-zoo bundle's own configs from ``tests/data/bundles/<name>`` with weights
made from its ``network_def`` (seed 0), on the CPU.

Both sides are whole fresh processes, start-up included, reading the same NIfTI
and writing a label NIfTI:

  medrecon  read_nifti -> load_bundle(trust) -> build_engine -> engine(volume) -> write_nifti
  monai     python -m monai.bundle run --config_file configs/inference.json
            --bundle_root B --datalist "['<nifti>']" --output_dir O --dataloader#num_workers 0

One warm-up each, then ``repeats`` rounds in turn. Reported: median wall time per
side, the ratio medrecon / monai, peak RSS of each process (``wait4``), the
voxel agreement of the two label maps, and medrecon's stage times.

``bench_bundle`` is what ``benchmarks/bench_foreign.py`` calls; run alone::

    python benchmarks/foreign_bundle.py [--bundle spleen_ct_segmentation] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "tests" / "data" / "bundles"
WORK = Path(__file__).resolve().parent / "_work" / "bundle"


def _prepare(name: str, shape: tuple[int, int, int], workdir: Path) -> tuple[Path, Path]:
    """The bundle (configs + seeded weights) and the big CT as NIfTI, made once."""
    import torch
    from monai.bundle import ConfigParser

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_infer import make_volume

    from medrecon.io.nifti import write_nifti

    bundle = workdir / name
    if not (bundle / "models" / "model.pt").is_file():
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.copytree(ZOO / name, bundle)
        (bundle / "models").mkdir()
        parser = ConfigParser()
        parser.read_config(str(next((bundle / "configs").glob("inference.*"))))
        torch.manual_seed(0)
        torch.save(
            parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt"
        )
    image = workdir / "data" / f"ct_{'x'.join(map(str, shape))}.nii.gz"
    if not image.is_file():
        image.parent.mkdir(parents=True, exist_ok=True)
        write_nifti(make_volume(shape), image)
    return bundle, image


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one child process."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        # wait4 (not Popen.wait) also returns the child's own resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def _child(bundle: Path, image: Path, out: Path) -> None:
    """medrecon's side, in its own process."""
    t0 = time.perf_counter()
    from medrecon.foreign.bundle import load_bundle
    from medrecon.io.nifti import read_nifti, write_nifti
    from medrecon.models.engines import build_engine

    t1 = time.perf_counter()
    volume = read_nifti(image)
    t2 = time.perf_counter()
    engine = build_engine(load_bundle(bundle, trust=True), device="cpu")
    t3 = time.perf_counter()
    seg = engine(volume)
    t4 = time.perf_counter()
    write_nifti(seg.labels, out)
    t5 = time.perf_counter()
    stages = {
        "import": t1 - t0,
        "read": t2 - t1,
        "build": t3 - t2,
        "segment": t4 - t3,
        "write": t5 - t4,
    }
    print(json.dumps({"stages": stages, "engine": seg.timings}))


def bench_bundle(
    name: str = "spleen_ct_segmentation",
    shape: tuple[int, int, int] = (512, 512, 300),
    repeats: int = 3,
    workdir: Path = WORK,
) -> dict:
    """Time medrecon's bundle engine against ``monai.bundle run``; returns every figure."""
    import nibabel as nib

    bundle, image = _prepare(name, shape, workdir)
    config = next((bundle / "configs").glob("inference.*"))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    ours_out = workdir / "medrecon_labels.nii.gz"
    monai_out = workdir / "monai_out"
    sides = {
        "medrecon": [sys.executable, __file__, "--child", str(bundle), str(image), str(ours_out)],
        "monai": [
            sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config),
            "--bundle_root", str(bundle), "--datalist", f"['{image}']",
            "--output_dir", str(monai_out), "--dataloader#num_workers", "0",
        ],
    }  # fmt: skip
    walls: dict[str, list[float]] = {side: [] for side in sides}
    rss: dict[str, float] = {}
    stages: dict = {}
    for round_ in range(repeats + 1):  # round 0 warms the page cache and imports
        for side, cmd in sides.items():
            shutil.rmtree(monai_out, ignore_errors=True)
            wall, peak, out = _run(cmd, env)
            if round_:
                walls[side].append(wall)
            rss[side] = max(rss.get(side, 0.0), peak)
            if side == "medrecon":
                stages = json.loads(out.strip().splitlines()[-1])
    ours = np.asarray(nib.load(ours_out).dataobj)
    ref = np.rint(np.asarray(nib.load(next(monai_out.rglob("*.nii.gz"))).dataobj)).reshape(
        ours.shape
    )
    median = {side: statistics.median(v) for side, v in walls.items()}
    result = {
        "bundle": name,
        "shape": list(shape),
        "repeats": repeats,
        "wall_s": walls,
        "median_s": median,
        "ratio_medrecon_over_monai": median["medrecon"] / median["monai"],
        "peak_rss_mib": rss,
        "agreement": float((ours == ref).mean()),
        "medrecon_stages_s": stages,
    }
    print(f"bundle {name} on {'x'.join(map(str, shape))} CT, CPU, {repeats} rounds")
    for side in sides:
        runs = ", ".join(f"{w:.1f}" for w in walls[side])
        print(
            f"  {side:9s} median {median[side]:7.1f} s  (runs {runs}) peak RSS {rss[side]:6.0f} MiB"
        )
    print(f"  ratio medrecon / monai: {result['ratio_medrecon_over_monai']:.2f}")
    print(f"  label agreement: {result['agreement']:.4%}")
    print(f"  medrecon stages: {json.dumps(stages)}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="spleen_ct_segmentation")
    p.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    result = bench_bundle(args.bundle, tuple(args.shape), args.repeats)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
