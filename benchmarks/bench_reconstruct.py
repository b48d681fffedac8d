"""Slice-to-volume reconstruction of simulated thick stacks from the real volumes.

From each real volume in ``../shared/data`` (the abdominal CT, 3 mm isotropic;
the abdominal MR, 3 mm) thick stacks are simulated with the exact forward
operator (box and Gaussian profiles, factors 2-6, with and without gaps),
reconstructed back onto the thin grid, and compared with the withheld thin
slices inside the body mask, between the first and last slice centre:

- peers: linear and cubic B-spline interpolation (scipy, the same grid);
- ours: the shipped pretrained network without fine-tuning, and fine-tuned on
  the stack itself (both with the data-consistency projection).

PSNR (dB, peak = the truth's range in the mask) and SSIM per case, the gain in
dB over B-spline, and, for the CT, the mean Dice of medrecon's segmentation of
each reconstruction against its segmentation of the truth. The pretrained
network never saw the MR nor any CT through-plane (z) detail (see
scripts/train_superres.py); the stacks here are thick along z for the CT and
along y for the MR. Then three orthogonal 4x stacks of the CT fused, against the
best single stack's B-spline, and the speed and peak memory of a 512x512x60
stack (with and without fine-tuning) in a fresh child process.

    python benchmarks/bench_reconstruct.py                  # everything
    python benchmarks/bench_reconstruct.py --quick          # CT box 4x only, no speed
    python benchmarks/bench_reconstruct.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from medrecon.io import load
from medrecon.superres import SliceProfile
from medrecon.superres.api import reconstruct
from medrecon.superres.baselines import body_mask, psnr, ssim
from medrecon.superres.degrade import simulate_stack
from medrecon.volume import Volume

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
METHODS = [
    ("linear", {"method": "linear"}),
    ("bspline", {"method": "bspline"}),
    ("pretrained", {"finetune": False}),
    ("fine-tuned", {}),
]
#: (name, kind, factor, gap factor): spacing = factor x h; thickness = spacing / gap.
CASES = [
    ("box 2x", "box", 2, 1.0),
    ("box 4x", "box", 4, 1.0),
    ("box 6x", "box", 6, 1.0),
    ("gaussian 4x", "gaussian", 4, 1.0),
    ("box 4x gapped", "box", 4, 4 / 3),
    ("gaussian 6x gapped", "gaussian", 6, 1.5),
]


def volumes(shared: Path) -> list[tuple[str, Volume, int]]:
    """(name, thin volume, axis to make thick)."""
    out = []
    for name, rel, axis in (
        ("CT abdomen", "ct-abdomen/ct.nii.gz", 2),
        ("MR abdomen", "mr-abdomen/mr.nii.gz", 1),
    ):
        path = shared / rel
        if path.exists():
            v = load(path)
            out.append((name, Volume(np.asarray(v.array, np.float32), v.affine, v.meta), axis))
    return out


def eval_mask(truth: Volume, stack: Volume, axis: int) -> np.ndarray:
    """Body mask, cut to the fine planes strictly between the first and last slice centre."""
    mask = body_mask(truth)
    sim = stack.meta.extra["simulated"]
    h = sim["source_spacing_mm"]
    first = sim["first_centre_mm"] / h
    last = first + (stack.shape[axis] - 1) * sim["spacing_mm"] / h
    idx = np.arange(truth.shape[axis])
    keep = (idx > first) & (idx < last)
    shape = [1, 1, 1]
    shape[axis] = -1
    return mask & keep.reshape(shape)


class Dice:
    """Mean Dice of medrecon's segmentation of a reconstruction against that of the truth."""

    def __init__(self, truth: Volume) -> None:
        from medrecon.models.segment import segment

        self._segment = segment
        self.ref = np.asarray(segment(truth, "abdomen-ct", device="cpu").labels.array)
        self.values = [v for v in np.unique(self.ref) if v]

    def __call__(self, volume: Volume, mask: np.ndarray) -> float:
        seg = np.asarray(self._segment(volume, "abdomen-ct", device="cpu").labels.array)
        scores = []
        for v in self.values:
            a, b = (self.ref == v) & mask, (seg == v) & mask
            if a.sum() >= 50:
                scores.append(2 * (a & b).sum() / (a.sum() + b.sum()))
        return float(np.mean(scores)) if scores else float("nan")


def run_cases(vols, cases, dice_for_ct: bool) -> list[dict]:
    rows = []
    for vname, truth, axis in vols:
        h = float(truth.spacing[axis])
        dice = Dice(truth) if dice_for_ct and vname.startswith("CT") else None
        for cname, kind, factor, gap in cases:
            spacing = factor * h
            profile = SliceProfile(kind, spacing / gap, spacing)
            stack = simulate_stack(truth, axis, profile, offset=h)
            mask = eval_mask(truth, stack, axis)
            row = {"volume": vname, "case": cname, "slices": stack.shape[axis]}
            for mname, opts in METHODS:
                t = time.perf_counter()
                r = reconstruct([stack], like=truth, kind=kind, **opts)
                sec = time.perf_counter() - t
                out = r.volume.array
                row[mname] = {
                    "psnr": round(psnr(truth.array, out, mask), 3),
                    "ssim": round(ssim(truth.array, out, mask), 4),
                    "seconds": round(sec, 2),
                }
                if dice is not None:
                    row[mname]["dice"] = round(dice(r.volume, mask), 4)
            row["gain_db"] = round(row["fine-tuned"]["psnr"] - row["bspline"]["psnr"], 3)
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    cells = [f"{row['volume']:<11} {row['case']:<19}"]
    for mname, _ in METHODS:
        m = row[mname]
        d = f" D{m['dice']:.3f}" if "dice" in m else ""
        cells.append(f"{m['psnr']:6.2f}/{m['ssim']:.3f}{d}")
    cells.append(f"{row['gain_db']:+.2f} dB")
    return " | ".join(cells)


def fusion(vols) -> dict | None:
    """Three orthogonal 4x box stacks of the CT, fused, against each stack's B-spline."""
    if not vols:
        return None
    _, truth, _ = vols[0]
    h = float(truth.spacing[0])
    profile = SliceProfile("box", 4 * h, 4 * h)
    stacks = [simulate_stack(truth, a, profile, offset=h) for a in range(3)]
    mask = body_mask(truth)
    for a, s in enumerate(stacks):
        mask &= eval_mask(truth, s, a)
    out: dict = {"single_bspline": []}
    for s in stacks:
        r = reconstruct([s], like=truth, method="bspline")
        out["single_bspline"].append(round(psnr(truth.array, r.volume.array, mask), 3))
    best = max(out["single_bspline"])
    for label, opts in (("fused bspline", {"method": "bspline"}), ("fused network", {})):
        t = time.perf_counter()
        r = reconstruct(stacks, like=truth, **opts)
        arr = r.volume.array
        out[label] = {
            "psnr": round(psnr(truth.array, arr, mask), 3),
            "ssim": round(ssim(truth.array, arr, mask), 4),
            "gain_over_best_single_db": round(psnr(truth.array, arr, mask) - best, 3),
            "seconds": round(time.perf_counter() - t, 2),
        }
    print("fusion:", json.dumps(out), flush=True)
    return out


SPEED_CHILD = """
import json, resource, sys, time, numpy as np
from medrecon.io import load
from medrecon.superres import SliceProfile
from medrecon.superres.api import reconstruct
from medrecon.superres.grid import OutputGrid, resample_to
from medrecon.volume import Volume
ct = load(sys.argv[1])
# A 512x512x60 stack of 3 mm slices, resampled from the real CT to 0.7 mm pixels.
a = ct.affine.copy(); a[:3, 0] *= 0.7 / 3.0; a[:3, 1] *= 0.7 / 3.0
grid = OutputGrid((512, 512, 60), a)
stack = resample_to(ct, grid, order=1)
stack = Volume(stack.array, stack.affine, stack.meta)
stack.meta.extra["slice_thickness"] = 3.0
t = time.perf_counter()
r = reconstruct([stack], finetune=sys.argv[2] == "1")
sec = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": sec, "peak_rss_mb": rss, "shape": list(r.volume.shape),
                  "stage_seconds": r.sidecar["stacks"][0]["seconds"]}))
"""


def speed(shared: Path) -> dict:
    out = {}
    for label, ft in (("no fine-tune", "0"), ("fine-tune", "1")):
        proc = subprocess.run(
            [sys.executable, "-c", SPEED_CHILD, str(shared / "ct-abdomen/ct.nii.gz"), ft],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"speed {label}: {out[label]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--quick", action="store_true", help="CT box 4x only; no fusion or speed")
    ap.add_argument("--no-dice", action="store_true", help="skip the segmentation Dice")
    ap.add_argument("--speed-only", action="store_true", help="only the 512x512x60 timing")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    vols = volumes(args.shared)
    if not vols:
        print(f"no real volumes under {args.shared}", file=sys.stderr)
        return 1
    print(f"python {platform.python_version()}, {platform.machine()}")
    if args.speed_only:
        speed(args.shared)
        return 0
    print("volume      case                | " + " | ".join(m for m, _ in METHODS) + " | gain")
    cases = [c for c in CASES if c[0] == "box 4x"] if args.quick else CASES
    result = {"cases": run_cases(vols[:1] if args.quick else vols, cases, not args.no_dice)}
    if not args.quick:
        result["fusion"] = fusion(vols)
        result["speed"] = speed(args.shared)
    result["peak_rss_mb_parent"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
