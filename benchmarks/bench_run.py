"""Whole ``medrecon run`` on the sample study: time per stage, and the cost of the exports.

Each round runs ``medrecon run`` as a fresh subprocess (what a user waits for,
including Python start-up and the model load) and, in this process,
``run_study`` with its per-stage timings. For scale it also times the engine
alone (``Segmenter(volume)``, already loaded) so the export overhead reads as a
ratio. Medians over the rounds; the machine is noisy, so read the ratios.

    python benchmarks/bench_run.py                 # sample_data/ct-abdomen, 3 rounds
    python benchmarks/bench_run.py --repeats 5 --json results/bench_run.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "ct-abdomen"


def _cli_round(study: Path, work: Path, pipeline: str, device: str) -> float:
    out = work / f"cli-{time.time_ns()}"
    cmd = [sys.executable, "-m", "medrecon.cli.main", "-q", "run", str(study), "-o", str(out)]
    cmd += ["--pipeline", pipeline, "--device", device, "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return seconds


def _api_round(study: Path, work: Path, segmenter) -> dict[str, float]:
    from medrecon.study.runner import run_study

    out = work / f"api-{time.time_ns()}"
    t0 = time.perf_counter()
    result = run_study(study, out, segmenter=segmenter)
    timings = dict(result.timings)
    timings["total"] = time.perf_counter() - t0
    shutil.rmtree(out)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=SAMPLE)
    parser.add_argument("--pipeline", default="abdomen-ct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from medrecon.io import load
    from medrecon.pipeline.segment import Segmenter

    segmenter = Segmenter(args.pipeline, device=args.device)
    volume = load(args.study)
    cli, api, engine = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench_run-") as tmp:
        work = Path(tmp)
        _api_round(args.study, work, segmenter)  # warm-up: page cache, lazy imports
        for _ in range(args.repeats):
            cli.append(_cli_round(args.study, work, args.pipeline, args.device))
            api.append(_api_round(args.study, work, segmenter))
            t0 = time.perf_counter()
            segmenter(volume)
            engine.append(time.perf_counter() - t0)

    stages = {k: statistics.median(r[k] for r in api) for k in api[0]}
    med_cli, med_engine = statistics.median(cli), statistics.median(engine)
    print(f"study {args.study} {volume.shape}, pipeline {args.pipeline}, device {args.device}")
    print(f"{args.repeats} rounds, medians")
    rounds = [round(c, 2) for c in cli]
    print(f"  medrecon run (subprocess, cold)   {med_cli:7.2f} s   rounds {rounds}")
    print(f"  run_study (model loaded)          {stages['total']:7.2f} s")
    print(f"  engine alone (Segmenter(volume))  {med_engine:7.2f} s")
    print(f"  ratio run_study / engine          {stages['total'] / med_engine:7.2f}")
    print("  stages of run_study:")
    for name, seconds in stages.items():
        if name != "total":
            print(f"    {name:<22} {seconds:7.3f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"cli_s": cli, "api": api, "engine_s": engine, "medians": stages}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
