"""``medrecon batch`` throughput: studies per minute for 1 and 2 workers on the local
engine and on Ray, and per-study time of ``batch`` against repeated ``medrecon run``.

The peer is the way TotalSegmentator-style tools process a cohort: one process per
study, so every study pays Python start-up, imports and the model load.

Cohort: ``--studies`` copies of a block of the real CT
``../shared/data/ct-abdomen/ct.nii.gz`` (``--block`` voxels at 3 mm), alternately
stored RAS and LPS on disk. Pipeline: by default the small test UNet of
``tests/pipeline_helpers.py`` trained here (about 10 s, not timed) with outputs
labels, seg.nrrd, meshes, stats and scene, so the CPU-bound export stages are in
the work; or ``--pipeline NAME_OR_YAML`` (e.g. ``abdomen-ct`` once its weights ship).

Timed, each from a cold start of its workers (worker start-up and model loads
included; the Ray cluster, started once with ``ray.init(num_cpus=2)``, is not):

  run x N      ``python -m medrecon.cli.main run STUDY -o OUT`` once per study
  local 1, 2   ``run_cohort`` with ``EngineSettings(kind="local", workers=1|2, threads=T)``
  ray 1, 2     ``run_cohort`` with ``EngineSettings(kind="ray", workers=1|2, threads=T)``

``--threads`` (T, default 1) fixes torch threads per worker so that 1 vs 2 workers
measures the workers, not torch's own threading; ``run`` keeps torch's default (all
cores), which favours the peer. The configurations run in turn, ``--repeats``
rounds; medians are printed with the load average seen, since a shared machine
moves the figures.

Printed: wall time, studies/min, per-study wall time, batch/run ratio (goal <= 0.7),
2-vs-1 worker scaling (goal >= 1.7 where the work is CPU bound) and the median
in-worker time per study. Run from the repository root::

    python benchmarks/bench_cohort.py [--studies 6] [--repeats 2] [--engines local,ray]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CT = ROOT.parent / "shared" / "data" / "ct-abdomen" / "ct.nii.gz"
RATIO_GOAL, SCALING_GOAL = 0.7, 1.7
BENCH_OUTPUTS = ["labels", "seg_nrrd", "meshes", "stats", "scene"]


def build_cohort(root: Path, n: int, block: tuple[int, int, int]) -> Path:
    import nibabel as nib
    import numpy as np

    img = nib.load(CT)
    start = [max(0, (s - b) // 2) for s, b in zip(img.shape, block)]
    sl = tuple(slice(a, a + b) for a, b in zip(start, block))
    array = np.asarray(img.dataobj)[sl].astype(np.int16)
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ start + img.affine[:3, 3]
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [array.shape[0] - 1, array.shape[1] - 1]
    for i in range(n):
        data, aff = (array, affine) if i % 2 == 0 else (array[::-1, ::-1].copy(), affine @ flip)
        nifti = nib.Nifti1Image(data, aff)
        nifti.set_qform(aff, code=1)
        nifti.set_sform(aff, code=1)
        (root / f"study-{i:03d}").mkdir(parents=True)
        nib.save(nifti, root / f"study-{i:03d}" / "ct.nii.gz")
    return root


def bench_pipeline(work: Path) -> Path:
    """The test UNet (trained here) with the export-heavy outputs."""
    import yaml

    sys.path.insert(0, str(ROOT / "tests"))
    from pipeline_helpers import train_ball_pipeline

    folder = work / "pipeline"
    folder.mkdir()
    path = train_ball_pipeline(folder)
    data = yaml.safe_load(path.read_text())
    data["outputs"] = BENCH_OUTPUTS
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def time_repeated_run(studies: list[Path], work: Path, pipeline: str, device: str) -> float:
    t0 = time.perf_counter()
    for study in studies:
        cmd = [sys.executable, "-m", "medrecon.cli.main", "-q", "run", str(study / "ct.nii.gz")]
        cmd += ["-o", str(work / "run" / study.name), "--pipeline", pipeline]
        cmd += ["--device", device, "--no-progress"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def time_batch(cohort: Path, out: Path, pipeline: str, args, engine: str, workers: int):
    from medrecon.cohort import CohortSpec, EngineSettings, Reporting, StudySettings, run_cohort

    marks: list[float] = []

    def on_event(event) -> None:  # first study handed out .. last one finished
        if (event.kind == "start" and not marks) or event.kind in ("complete", "failed"):
            marks.append(time.perf_counter())

    t0 = time.perf_counter()
    spec = CohortSpec(
        study=StudySettings(model=pipeline, device=args.device),
        engine=EngineSettings(kind=engine, workers=workers, threads=args.threads),
        reporting=Reporting(on_event=on_event),
    )
    result = run_cohort(cohort, out, spec)
    seconds = time.perf_counter() - t0
    if not result.ok:
        sys.exit(f"bench_cohort: {engine} x{workers}: {[r.error for r in result.failed]}")
    inner = statistics.median(r.seconds for r in result.records)
    return {"wall_s": seconds, "steady_s": marks[-1] - marks[0], "in_worker_s": inner}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=6)
    parser.add_argument("--block", type=int, nargs=3, default=[72, 64, 56])
    parser.add_argument("--pipeline", default=None, help="name or YAML (default: test UNet)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not CT.is_file():
        sys.exit(f"bench_cohort: {CT} not found (../shared/data beside the repository)")
    engines = [e for e in args.engines.split(",") if e]
    work = Path(tempfile.mkdtemp(prefix="bench_cohort-"))
    samples: dict[str, list[dict[str, float]]] = {}
    try:
        pipeline = args.pipeline or str(bench_pipeline(work))
        cohort = build_cohort(work / "cohort", args.studies, tuple(args.block))
        studies = sorted(p for p in cohort.iterdir())
        n = len(studies)
        print(
            f"{n} studies of {'x'.join(map(str, args.block))} voxels @ 3 mm; {os.cpu_count()} "
            f"CPUs; {args.threads} torch thread(s) per batch worker; {args.repeats} round(s)",
            flush=True,
        )
        if "ray" in engines:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            for r in range(args.repeats):
                shutil.rmtree(work / "run", ignore_errors=True)
                wall = time_repeated_run(studies, work, pipeline, args.device)
                _add(samples, "run x N", {"wall_s": wall}, n)
                for engine in engines:
                    for workers in (1, 2):
                        out = work / f"{engine}-{workers}-{r}"
                        figures = time_batch(cohort, out, pipeline, args, engine, workers)
                        _add(samples, f"{engine} {workers}", figures, n)
        finally:
            if "ray" in engines:
                ray.shutdown()
        figures = {
            k: {m: statistics.median(s[m] for s in v) for m in v[0]} for k, v in samples.items()
        }
        report(figures, n)
        if args.json:
            Path(args.json).write_text(
                json.dumps({"samples": samples, "medians": figures}, indent=2)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _add(samples, name: str, figures: dict[str, float], n: int) -> None:
    figures["per_study_s"] = figures["wall_s"] / n
    figures["load_1min"] = os.getloadavg()[0]
    samples.setdefault(name, []).append(figures)
    print(f"  {name}: {figures['wall_s']:.1f} s (load {figures['load_1min']:.1f})", flush=True)


def report(figures: dict[str, dict[str, float]], n: int) -> None:
    """Cold = wall time from the call (worker start-up and model loads included);
    steady = first study handed out to last one finished."""
    run = figures["run x N"]["per_study_s"]
    head = f"{'cold s':>7} {'/min':>6} {'s/study':>7} {'vs run':>6} {'steady s':>8} {'/min':>6}"
    print(f"\n{'':10} {head} {'in-worker':>9} load")
    for name, f in figures.items():
        steady = f.get("steady_s")
        tail = f"{steady:8.1f} {60 * n / steady:6.2f} {f['in_worker_s']:9.2f}" if steady else ""
        print(
            f"{name:10} {f['wall_s']:7.1f} {60 * n / f['wall_s']:6.2f} {f['per_study_s']:7.2f} "
            f"{f['per_study_s'] / run:6.2f} {tail:>25} {f['load_1min']:4.1f}"
        )
    for engine in ("local", "ray"):
        if f"{engine} 1" in figures:
            one, two = figures[f"{engine} 1"], figures[f"{engine} 2"]
            print(
                f"{engine}: batch/run per study {one['per_study_s'] / run:.2f} (goal <= "
                f"{RATIO_GOAL}); 2 vs 1 workers {one['wall_s'] / two['wall_s']:.2f}x cold, "
                f"{one['steady_s'] / two['steady_s']:.2f}x steady (goal >= {SCALING_GOAL} when "
                "CPU bound)"
            )


if __name__ == "__main__":
    sys.exit(main())
