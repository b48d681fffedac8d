"""Whole-process timing of ``medrecon info`` / ``convert`` against ``dcm2niix``.

Used by ``bench_load.py --cli``. Every folder of ../shared/data/dicom that holds
DICOM files itself (the ``dcm2niix-ref`` folders left out) is one case. Per case,
interleaved round by round after one untimed warm-up of each:

  info       medrecon info FOLDER                     (headers: the series table)
  convert    medrecon convert FOLDER -o TMPDIR        (.nii.gz + JSON per volume)
  d-header   dcm2niix -b o -o TMPDIR FOLDER           (headers: the JSON sidecars only)
  d-convert  dcm2niix -z y -o TMPDIR FOLDER           (.nii.gz + JSON per volume)

and with ``--cli-baseline DIR`` also info@base / convert@base: the same medrecon
commands run from another checkout (an older commit), for a before/after.

Each is a fresh process, start-up included, as a user runs it; medrecon runs
from this checkout (``python -c 'from medrecon.cli.main import main; main()'``
with PYTHONPATH at the repository root, what the ``medrecon`` console script
does). Wall time by ``time.perf_counter()`` around ``subprocess.run``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "data" / "dicom"
GOAL_TOTAL = 1.5  # medrecon's total time at most 1.5x dcm2niix's, over the corpus
PAIRS = {"info": "d-header", "convert": "d-convert"}
GOAL_KEYS = ("info/d-header", "convert/d-convert", "info+convert/dcm2niix")
_ENTRY = "import sys; from medrecon.cli.main import main; sys.exit(main())"


def corpus_folders(root: Path = CORPUS) -> list[Path]:
    """Folders under ``root`` that directly hold files (the DICOM series), sorted."""
    found = set()
    for path in root.rglob("*"):
        skip = "dcm2niix-ref" in path.parts or path.suffix in (".txt", ".md", ".json")
        if path.is_file() and not skip and path.parent != root:
            found.add(path.parent)
    return sorted(found)


def _commands(folder: Path, out: Path, exe: str, baseline: Path | None) -> dict:
    """name -> (argv, PYTHONPATH or None for dcm2niix)."""
    medrecon = [sys.executable, "-c", _ENTRY]
    commands = {
        "info": ([*medrecon, "info", str(folder)], REPO),
        "convert": ([*medrecon, "convert", str(folder), "-o", str(out / "convert")], REPO),
        "d-header": ([exe, "-b", "o", "-o", str(out / "d-header"), str(folder)], None),
        "d-convert": ([exe, "-z", "y", "-o", str(out / "d-convert"), str(folder)], None),
    }
    if baseline is not None:  # the same commands from another checkout, in the same rounds
        commands["info@base"] = (commands["info"][0], baseline)
        target = str(out / "convert@base")
        commands["convert@base"] = ([*medrecon, "convert", str(folder), "-o", target], baseline)
    return commands


def _run(name: str, cmd: list[str], out: Path, root: Path | None) -> tuple[float, int]:
    target = out / name
    shutil.rmtree(target, ignore_errors=True)
    if root is None:
        target.mkdir(parents=True)  # dcm2niix needs its output folder; medrecon makes its own
    env = {**os.environ, "PYTHONPATH": str(root)} if root is not None else dict(os.environ)
    t0 = time.perf_counter()
    # cwd outside any checkout: `python -c` puts the cwd first on sys.path, ahead of PYTHONPATH.
    proc = subprocess.run(
        cmd, env=env, cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - t0, proc.returncode


def time_cli(
    exe: str, repeats: int, folders: list[Path] | None = None, baseline: Path | None = None
) -> dict:
    """Per folder and command: runs (s), median, exit codes; totals and ratios."""
    folders = corpus_folders() if folders is None else folders
    cases = {}
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        out = Path(tmp)
        for folder in folders:
            commands = _commands(folder, out, exe, baseline)
            codes = {name: _run(name, cmd, out, root)[1] for name, (cmd, root) in commands.items()}
            runs: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(repeats):
                for name, (cmd, root) in commands.items():
                    seconds, codes[name] = _run(name, cmd, out, root)
                    runs[name].append(seconds)
            rel = str(folder.relative_to(CORPUS)) if folder.is_relative_to(CORPUS) else str(folder)
            cases[rel] = {
                "files": sum(1 for p in folder.rglob("*") if p.is_file()),
                "median_s": {n: statistics.median(t) for n, t in runs.items()},
                "runs_s": runs,
                "exit_codes": codes,
            }
            med = cases[rel]["median_s"]
            print(
                f"{rel:<38}"
                + "".join(f"{med[n]:>13.3f}" for n in commands)
                + ("" if not any(codes.values()) else f"  exit codes {codes}"),
                flush=True,
            )
    names = list(next(iter(cases.values()))["median_s"]) if cases else []
    totals = {name: sum(c["median_s"][name] for c in cases.values()) for name in names}
    pairs = list(PAIRS.items())
    if baseline is not None:
        pairs += [("info@base", "d-header"), ("convert@base", "d-convert")]
        pairs += [("info", "info@base"), ("convert", "convert@base")]
    ratios = {f"{m}/{d}": totals[m] / totals[d] for m, d in pairs}
    ratios["info+convert/dcm2niix"] = (totals["info"] + totals["convert"]) / (
        totals["d-header"] + totals["d-convert"]
    )
    per_case = {
        f"{m}/{d}": statistics.median(c["median_s"][m] / c["median_s"][d] for c in cases.values())
        for m, d in pairs
    }
    return {
        "repeats": repeats,
        "cases": cases,
        "totals_s": totals,
        "ratios_of_totals": ratios,
        "median_case_ratios": per_case,
        "goal": GOAL_TOTAL,
        "baseline": str(baseline) if baseline else None,
        "goals_met": {k: ratios[k] <= GOAL_TOTAL for k in GOAL_KEYS},
    }


def print_header(baseline: Path | None) -> None:
    names = ["info", "convert", "d-header", "d-convert"]
    names += ["info@base", "convert@base"] if baseline else []
    print(f"\n{'folder (median s per run)':<38}" + "".join(f"{n:>13}" for n in names))


def print_summary(result: dict) -> None:
    t = result["totals_s"]
    print(
        f"\ntotals over {len(result['cases'])} folders (sum of medians, s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in t.items())
    )
    for key, ratio in result["ratios_of_totals"].items():
        goal = result["goals_met"].get(key)
        verdict = "met" if goal else "NOT met"
        met = "" if goal is None else f"  (goal <= {result['goal']}: {verdict})"
        print(f"ratio {key:<22} {ratio:5.2f}{met}")
    for key, ratio in result["median_case_ratios"].items():
        print(f"median per-folder ratio {key:<22} {ratio:5.2f}")


def add_arguments(p) -> None:
    p.add_argument("--cli", action="store_true", help="also time medrecon/dcm2niix processes")
    p.add_argument("--cli-only", action="store_true", help="only the whole-process comparison")
    p.add_argument("--cli-repeats", type=int, default=5, help="rounds per folder (5)")
    p.add_argument(
        "--cli-tree",
        action="store_true",
        help="one process per command on the whole ../shared/data/dicom tree (every series "
        "at once, as a user converts a folder) instead of one per series folder",
    )
    p.add_argument(
        "--cli-baseline",
        type=Path,
        default=None,
        metavar="DIR",
        help="also time info/convert from this checkout (e.g. an older commit) in the same rounds",
    )


def run_cli(args, exe: str, info: dict) -> dict:
    """``bench_load.py --cli``: time, print, and add the figures to ``--json``."""
    print(f"\nwhole processes, {args.cli_repeats} rounds per folder after one warm-up:")
    print_header(args.cli_baseline)
    folders = [CORPUS] if getattr(args, "cli_tree", False) else None
    result = time_cli(exe, args.cli_repeats, folders=folders, baseline=args.cli_baseline)
    result["mode"] = "tree" if folders else "per-folder"
    print_summary(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(args.json.read_text()) if args.json.is_file() else {}
        key = "cli_tree" if folders else "cli"
        args.json.write_text(json.dumps({**previous, **info, key: result}, indent=2))
        print(f"\nwrote {args.json}")
    return result
