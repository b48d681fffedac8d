"""How the shipped abdomen model generalises: Dice per organ on cases built from real data.

Data: ``../shared/data/ct-abdomen`` (the CT the model was trained on, 122x101x112 @
3 mm, with TotalSegmentator labels) and ``../shared/data/mr-abdomen`` (a different
subject, never used in training). Reference labels are mapped onto the model's labels
by name; every other structure is background. Every case goes through medrecon's own
engine (one ``Segmenter`` per pipeline, loaded once, refine steps as a user gets them).

  whole CT          the CT as it is (sanity row: seen in training)
  slab W mm @ z     axial slabs of W = 30, 45, 60 mm cut from the CT (native voxels,
                    affine shifted) every --stride mm; also the whole-CT prediction
                    cropped to the same slab: gap = slab Dice - that Dice (the
                    field-of-view effect alone)
  thick S mm        the CT resampled to S = 5, 7 mm slices (Gaussian slice profile,
                    FWHM = S), labels nearest-neighbour on the same grid
  phase P           enhancing structures moved to phase P's typical HU
                    (``medrecon.train.phases``; the CT itself is non-contrast)
  MR (held out)     the MR through --mr-pipeline (skipped with a reason if not loadable)

The "peer" of every row is the whole-volume result: rows print the ratio of their mean
Dice to it (slabs: to the whole-CT prediction in the same region). Then a per-width slab
summary and PASS/FAIL for the goals: every 30-60 mm slab within 0.05 of the whole-volume
Dice for liver, spleen and kidneys; leave-MR-out liver >= 0.80, spleen and kidneys >=
0.75; no phantom organ (predicted > 5 mL where the reference has none) on any case.

Run from the repository root::

    python benchmarks/bench_generalise.py [--stride 15] [--json out.json] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generalise_cases import (
    axial_axis,
    cut_slab,
    read_label_names,
    remap_by_name,
    slab_starts,
    thick_label_slices,
    thick_slices,
)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
WIDTHS_MM = (30, 45, 60)
THICK_MM = (5, 7)
PHASES = ("arterial", "portal_venous", "delayed")
GOAL_ORGANS = ("liver", "spleen", "kidney_right", "kidney_left")
MIN_ML = 10.0  # an organ counts in a slab's summary from this much reference inside it
PHANTOM_ML = 5.0  # predicted above this where the reference has none = phantom organ
SLAB_TOL = 0.05
MR_GOALS = {"liver": 0.80, "spleen": 0.75, "kidney_right": 0.75, "kidney_left": 0.75}
SHORT = {
    "spleen": "spl",
    "kidney_right": "kidR",
    "kidney_left": "kidL",
    "gallbladder": "gall",
    "liver": "liver",
    "stomach": "stom",
    "aorta": "aorta",
    "inferior_vena_cava": "IVC",
    "pancreas": "panc",
    "urinary_bladder": "bladd",
}

log = logging.getLogger("bench_generalise")


# -- scoring ---------------------------------------------------------------------------


def voxel_ml(affine: np.ndarray) -> float:
    return abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0


def score(pred: np.ndarray, ref: np.ndarray, labels, ml: float) -> dict:
    """Per organ name: Dice (None where the reference lacks it), reference and predicted
    mL, intersection and sizes in voxels (for pooling)."""
    from medrecon.train.validate import dice_per_label

    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ")
    p, r = pred.reshape(-1), ref.reshape(-1)
    everything = np.ones(p.shape, dtype=bool)
    name_of = dict(labels)
    out = {}
    for value, (dice, n_ref, n_pred) in dice_per_label(
        p, r, everything, [v for v, _ in labels]
    ).items():
        name = name_of[value]
        inter = 0 if math.isnan(dice) else round(dice * (n_ref + n_pred) / 2.0)
        out[name] = {
            "dice": float(dice) if n_ref else None,
            "ref_ml": n_ref * ml,
            "pred_ml": n_pred * ml,
            "inter": int(inter),
            "n_ref": int(n_ref),
            "n_pred": int(n_pred),
        }
    return out


def mean_dice(organs: dict, names=None) -> float | None:
    """Mean Dice over the organs (of ``names``, default all) that have a reference."""
    names = organs if names is None else names
    vals = [organs[n]["dice"] for n in names if organs.get(n, {}).get("dice") is not None]
    return float(np.mean(vals)) if vals else None


def phantoms(organs: dict) -> list[dict]:
    return [
        {"organ": n, "pred_ml": round(o["pred_ml"], 1)}
        for n, o in organs.items()
        if o["n_ref"] == 0 and o["pred_ml"] > PHANTOM_ML
    ]


def record(name, kind, note, organs, seconds, **extra) -> dict:
    return {
        "name": name,
        "kind": kind,
        "note": note,
        "organs": organs,
        "mean": mean_dice(organs),
        "phantoms": phantoms(organs),
        "seconds": seconds,
        **extra,
    }


# -- cases -----------------------------------------------------------------------------


class Runner:
    """One Segmenter per pipeline (network loaded once), timed calls."""

    def __init__(self, pipeline, device: str):
        from medrecon.pipeline.segment import Segmenter

        t0 = time.perf_counter()
        self.segmenter = Segmenter(pipeline, device=device)
        self.load_s = time.perf_counter() - t0
        self.pipeline = self.segmenter.pipeline
        self.labels = [(lab.value, lab.name) for lab in self.pipeline.labels]
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, volume) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        result = self.segmenter(volume)
        dt = time.perf_counter() - t0
        self.calls += 1
        self.seconds += dt
        return result.labels.array, dt


def _z_label(volume, axis: int, start: int, stop: int) -> float:
    """RAS S (mm) of the slab's centre."""
    centre = (np.asarray(volume.spatial_shape, dtype=float) - 1.0) / 2.0
    centre[axis] = (start + stop - 1) / 2.0
    return float(volume.voxel_to_ras(centre)[0][2])


def slab_cases(ct, ref, whole_pred, run: Runner, stride_mm: float) -> list[dict]:
    axis = axial_axis(ct.affine)
    dz = ct.spacing[axis]
    n = ct.spatial_shape[axis]
    ml = voxel_ml(ct.affine)
    step = max(1, round(stride_mm / dz))
    whole_vol = ref.with_array(whole_pred)
    cases = []
    for width_mm in WIDTHS_MM:
        width = max(1, round(width_mm / dz))
        starts = slab_starts(n, width, step)
        log.info("slabs %d mm: %d slices, %d positions", width_mm, width, len(starts))
        for start in starts:
            stop = start + width
            slab = cut_slab(ct, start, stop, axis=axis)
            pred, dt = run(slab)
            ref_slab = cut_slab(ref, start, stop, axis=axis).array
            organs = score(pred, ref_slab, run.labels, ml)
            whole = score(
                cut_slab(whole_vol, start, stop, axis=axis).array, ref_slab, run.labels, ml
            )
            gap = {
                n_: (o["dice"] - whole[n_]["dice"])
                if o["dice"] is not None and whole[n_]["dice"] is not None
                else None
                for n_, o in organs.items()
            }
            z = _z_label(ct, axis, start, stop)
            cases.append(
                record(
                    f"slab {width_mm} mm @ {z:+.0f}",
                    "slab",
                    "train subject",
                    organs,
                    dt,
                    width_mm=width_mm,
                    slices=[start, stop],
                    z_mm=z,
                    whole_in_region=whole,
                    whole_in_region_mean=mean_dice(
                        whole, [k for k, o in organs.items() if o["dice"] is not None]
                    ),
                    gap=gap,
                )
            )
    return cases


def thick_cases(ct, ref, run: Runner) -> list[dict]:
    cases = []
    for s in THICK_MM:
        vol, positions = thick_slices(ct, s)
        ref_thick = thick_label_slices(ref, positions, s)
        pred, dt = run(vol)
        organs = score(pred, ref_thick.array, run.labels, voxel_ml(vol.affine))
        log.info("thick %d mm: grid %s, %.1f s", s, vol.spatial_shape, dt)
        cases.append(
            record(
                f"thick {s} mm",
                "thick",
                "train subject",
                organs,
                dt,
                slice_mm=s,
                shape=list(vol.spatial_shape),
            )
        )
    return cases


def phase_cases(ct, ref, source_labels, source_names, run: Runner) -> list[dict]:
    from medrecon.train.phases import apply_phase, phase_groups, phase_targets

    groups = phase_groups(source_names)
    cases = []
    for phase in PHASES:
        targets = phase_targets(phase)
        image = apply_phase(ct.array, source_labels.array, groups, targets)
        pred, dt = run(ct.with_array(image))
        organs = score(pred, ref.array, run.labels, voxel_ml(ct.affine))
        log.info("phase %s: %.1f s", phase, dt)
        cases.append(
            record(f"phase {phase}", "phase", "train subject", organs, dt, targets_hu=targets)
        )
    return cases


def mr_case(data: Path, mr_pipeline: str, device: str) -> tuple[dict | None, str | None, Runner]:
    """(case, None, runner) or (None, reason it was skipped, None)."""
    import medrecon

    folder = data / "mr-abdomen"
    if not (folder / "mr.nii.gz").is_file():
        return None, f"{folder / 'mr.nii.gz'} not found", None
    try:
        run = Runner(mr_pipeline, device)
    except Exception as exc:  # any reason the pipeline cannot run is a skip, not a crash
        return None, f"pipeline {mr_pipeline!r} not loadable: {type(exc).__name__}: {exc}", None
    mr = medrecon.load(folder / "mr.nii.gz")
    src = medrecon.load(folder / "labels.nii.gz")
    if src.spatial_shape != mr.spatial_shape or not np.allclose(src.affine, mr.affine, atol=1e-3):
        raise ValueError("mr-abdomen labels.nii.gz is not on the MR's grid")
    ref = remap_by_name(src.array, read_label_names(folder / "labels.json"), run.labels)
    pred, dt = run(mr)
    organs = score(pred, ref, run.labels, voxel_ml(mr.affine))
    log.info("MR through %s: %.1f s", run.pipeline.name, dt)
    return (
        record("MR (held out)", "mr", "held out", organs, dt, pipeline=run.pipeline.name),
        None,
        run,
    )


def _predicted_ml(run: Runner, volume, name: str) -> dict:
    pred, dt = run(volume)
    ml = voxel_ml(volume.affine)
    found = {label: round(float((pred == value).sum() * ml), 1) for value, label in run.labels}
    return {"name": name, "ml": found, "seconds": dt}


def chest_case(run: Runner) -> dict | None:
    """Predicted mL per organ on another patient's chest CT without labels (slicerio's
    ``CTChest4.nrrd``, 3x3x10 mm): no Dice, but a urinary bladder there is a phantom."""
    try:
        import slicerio
    except ImportError:
        return None
    path = Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd"
    if not path.is_file():
        return None
    import medrecon

    return _predicted_ml(run, medrecon.load(path), "chest CT, another patient (unlabelled)")


def head_case(run: Runner, data: Path) -> dict | None:
    """Predicted mL per organ on the GE head CT of the DICOM set, as a NIfTI would give
    it (no modality, no body part, so nothing refuses it): every organ there is a
    phantom. The Segmenter runs without medrecon's domain check, as in every row."""
    folder = data / "dicom" / "ct-ge-tilt-uneven"
    if not folder.is_dir():
        return None
    from dataclasses import replace

    from medrecon.io import load_all
    from medrecon.volume import Volume

    volume = load_all(folder)[0]
    extra = {k: v for k, v in volume.meta.extra.items() if k != "body_part"}
    untagged = Volume(volume.array, volume.affine, replace(volume.meta, extra=extra, modality=""))
    return _predicted_ml(run, untagged, "head CT, untagged (unlabelled)")


# -- summary and goals -----------------------------------------------------------------


def slab_summary(slabs: list[dict]) -> list[dict]:
    rows = []
    for width_mm in WIDTHS_MM:
        cases = [c for c in slabs if c["width_mm"] == width_mm]
        for organ in GOAL_ORGANS:
            inter = sum(c["organs"][organ]["inter"] for c in cases)
            size = sum(c["organs"][organ]["n_ref"] + c["organs"][organ]["n_pred"] for c in cases)
            w_inter = sum(c["whole_in_region"][organ]["inter"] for c in cases)
            w_size = sum(
                c["whole_in_region"][organ]["n_ref"] + c["whole_in_region"][organ]["n_pred"]
                for c in cases
            )
            qual = [c for c in cases if c["organs"][organ]["ref_ml"] >= MIN_ML]
            dice = [c["organs"][organ]["dice"] for c in qual]
            whole = [c["whole_in_region"][organ]["dice"] for c in qual]
            gaps = [(c["gap"][organ], c["name"]) for c in qual]
            worst_gap = min(gaps) if gaps else (None, None)
            worst = min(zip(dice, (c["name"] for c in qual))) if dice else (None, None)
            rows.append(
                {
                    "width_mm": width_mm,
                    "organ": organ,
                    "slabs": len(cases),
                    "qualifying": len(qual),
                    "median": statistics.median(dice) if dice else None,
                    "worst": worst[0],
                    "worst_at": worst[1],
                    "pooled": 2.0 * inter / size if size else None,
                    "whole_median": statistics.median(whole) if whole else None,
                    "whole_pooled": 2.0 * w_inter / w_size if w_size else None,
                    "worst_gap": worst_gap[0],
                    "worst_gap_at": worst_gap[1],
                    "outside": sum(1 for g, _ in gaps if g < -SLAB_TOL),
                }
            )
    return rows


def goals(cases: list[dict], summary: list[dict], mr: dict | None, mr_skip: str | None) -> dict:
    organ_slabs = sum(r["qualifying"] for r in summary)
    outside = sum(r["outside"] for r in summary)
    gaps = [r for r in summary if r["worst_gap"] is not None]
    worst = min(gaps, key=lambda r: r["worst_gap"]) if gaps else None
    slab = {
        "criterion": (
            f"each {'/'.join(map(str, WIDTHS_MM))} mm slab holding >= {MIN_ML:g} mL of the "
            f"organ's reference: {', '.join(GOAL_ORGANS)} slab Dice >= whole-volume Dice "
            f"in the same region - {SLAB_TOL}"
        ),
        "organ_slabs": organ_slabs,
        "outside": outside,
        "worst": (
            {"organ": worst["organ"], "gap": worst["worst_gap"], "at": worst["worst_gap_at"]}
            if worst
            else None
        ),
        "status": "PASS" if organ_slabs and outside == 0 else "FAIL",
    }
    if mr is None:
        mr_goal = {"status": "SKIPPED", "reason": mr_skip}
    else:
        misses = {
            o: mr["organs"].get(o, {}).get("dice")
            for o, g in MR_GOALS.items()
            if (mr["organs"].get(o, {}).get("dice") or 0.0) < g
        }
        mr_goal = {
            "status": "FAIL" if misses else "PASS",
            "dice": {o: mr["organs"].get(o, {}).get("dice") for o in MR_GOALS},
            "misses": misses,
        }
    with_phantoms = [(c["name"], c["phantoms"]) for c in cases if c["phantoms"]]
    phantom_goal = {
        "status": "FAIL" if with_phantoms else "PASS",
        "cases": len(cases),
        "cases_with_phantoms": len(with_phantoms),
        "counts": _phantom_counts(cases),
    }
    return {"slab_robustness": slab, "leave_mr_out": mr_goal, "no_phantoms": phantom_goal}


def _phantom_counts(cases: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in cases:
        for p in c["phantoms"]:
            counts[p["organ"]] = counts.get(p["organ"], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# -- printing --------------------------------------------------------------------------


def _f(x, width=5, digits=3) -> str:
    return f"{x:>{width}.{digits}f}" if x is not None else f"{'—':>{width}}"


def print_table(cases: list[dict], names: list[str], whole_mean: float | None) -> None:
    cols = [SHORT.get(n, n[:5]) for n in names]
    print(
        f"\n{'case':<20} {'note':<16} "
        + " ".join(f"{c:>5}" for c in cols)
        + f" {'mean':>5} {'/whole':>6} {'min gap':>13}"
        + f"  phantoms (> {PHANTOM_ML:g} mL, no reference)"
    )
    for c in cases:
        if c["kind"] == "slab":
            peer = c["whole_in_region_mean"]
            qual = [
                (c["gap"][o], o)
                for o in GOAL_ORGANS
                if c["organs"][o]["ref_ml"] >= MIN_ML and c["gap"][o] is not None
            ]
            g = min(qual) if qual else None
            gap = f"{g[0]:+.3f} {SHORT[g[1]]:<5}" if g else ""
        else:
            peer, gap = (whole_mean if c["kind"] != "whole" else None), ""
        ratio = c["mean"] / peer if c["mean"] is not None and peer else None
        ph = ", ".join(
            f"{SHORT.get(p['organ'], p['organ'])} {p['pred_ml']:.1f}" for p in c["phantoms"]
        )
        print(
            f"{c['name']:<20} {c['note']:<16} "
            + " ".join(_f(c["organs"].get(n, {}).get("dice")) for n in names)
            + f" {_f(c['mean'])} {_f(ratio, 6, 2)} {gap:>13}  {ph or 'none'}"
        )


def print_summary(summary: list[dict]) -> None:
    print(
        f"\nslab summary: median/worst over slabs holding >= {MIN_ML:g} mL of the organ's "
        "reference; pooled over all slabs (sum 2|A∩B| / sum |A|+|B|); 'whole' = the whole-CT "
        "prediction cropped to the same slabs; gap = slab Dice - whole Dice, same slab"
    )
    print(
        f"{'width':>6} {'organ':<13} {'slabs':>7} {'median':>6} {'worst':>6} {'pooled':>6}"
        f" {'w.med':>6} {'w.pool':>6} {'med/w':>6} {'pool/w':>6} {'worst gap':>9}  at"
    )
    for r in summary:

        def ratio(a, b):
            return a / b if a is not None and b else None

        print(
            f"{r['width_mm']:>3} mm {r['organ']:<13} {r['qualifying']:>3}/{r['slabs']:<3}"
            f" {_f(r['median'], 6)} {_f(r['worst'], 6)} {_f(r['pooled'], 6)}"
            f" {_f(r['whole_median'], 6)} {_f(r['whole_pooled'], 6)}"
            f" {_f(ratio(r['median'], r['whole_median']), 6, 2)}"
            f" {_f(ratio(r['pooled'], r['whole_pooled']), 6, 2)}"
            f" {_f(r['worst_gap'], 9)}  {r['worst_gap_at'] or ''}"
        )


def print_goals(g: dict) -> None:
    s = g["slab_robustness"]
    w = s["worst"]
    worst = f"; worst {w['organ']} {w['gap']:+.3f} on {w['at']}" if w else ""
    print(
        f"\ngoal slab robustness: {s['status']} ({s['outside']} of {s['organ_slabs']} "
        f"organ-slabs more than {SLAB_TOL} below{worst})"
    )
    print(f"  criterion: {s['criterion']}")
    m = g["leave_mr_out"]
    want = ", ".join(f"{o} >= {v:.2f}" for o, v in MR_GOALS.items())
    if m["status"] == "SKIPPED":
        print(f"goal leave-MR-out ({want}): SKIPPED ({m['reason']})")
    else:
        got = ", ".join(f"{o} {_f(d).strip()}" for o, d in m["dice"].items())
        print(f"goal leave-MR-out ({want}): {m['status']} ({got})")
    p = g["no_phantoms"]
    counts = ", ".join(f"{o} on {n}" for o, n in p["counts"].items())
    print(
        f"goal no phantom organ > {PHANTOM_ML:g} mL on any case: {p['status']} "
        f"({p['cases_with_phantoms']} of {p['cases']} cases{': ' + counts if counts else ''})"
    )


# -- main ------------------------------------------------------------------------------


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | np.floating):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", default="abdomen-ct", help="CT pipeline: name or YAML path")
    p.add_argument("--mr-pipeline", default="abdomen-mr", help="MR pipeline: name or YAML path")
    p.add_argument(
        "--stride", type=float, default=15.0, help="slab step in mm (15; 3 = every slice)"
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write every figure as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--data", type=Path, default=DATA, help="shared data folder (../shared/data)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("medrecon").setLevel(logging.WARNING)
    import torch

    import medrecon

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.data / "ct-abdomen"
    if not (folder / "ct.nii.gz").is_file():
        print(f"{folder / 'ct.nii.gz'} not found: this benchmark needs the shared data folder")
        return 2
    t_start = time.perf_counter()
    run = Runner(args.pipeline, args.device)
    device = run.segmenter.choice.device
    log.info("loaded %s in %.1f s on %s", run.pipeline.name, run.load_s, device)
    ct = medrecon.load(folder / "ct.nii.gz")
    src = medrecon.load(folder / "labels.nii.gz")
    if src.spatial_shape != ct.spatial_shape or not np.allclose(src.affine, ct.affine, atol=1e-3):
        raise ValueError("ct-abdomen labels.nii.gz is not on the CT's grid")
    source_names = read_label_names(folder / "labels.json")
    ref = src.with_array(remap_by_name(src.array, source_names, run.labels))
    missing = [n for _, n in run.labels if n not in source_names.values()]
    if missing:
        log.warning("reference has no structure named %s: those columns are —", ", ".join(missing))

    whole_pred, dt = run(ct)
    whole = record(
        "whole CT",
        "whole",
        "seen in training",
        score(whole_pred, ref.array, run.labels, voxel_ml(ct.affine)),
        dt,
    )
    log.info("whole CT: mean Dice %.3f, %.1f s", whole["mean"], dt)
    slabs = slab_cases(ct, ref, whole_pred, run, args.stride)
    thick = thick_cases(ct, ref, run)
    phase = phase_cases(ct, ref, src, source_names, run)
    mr, mr_skip, mr_run = mr_case(args.data, args.mr_pipeline, args.device)
    if mr_skip:
        log.warning("MR row skipped: %s", mr_skip)
    cases = [whole, *slabs, *thick, *phase, *([mr] if mr else [])]
    summary = slab_summary(slabs)
    verdict = goals(cases, summary, mr, mr_skip)
    wall = time.perf_counter() - t_start

    names = [n for _, n in run.labels]
    sha = run.pipeline.weights.sha256[:12] if run.pipeline.weights else "none"
    print(
        f"bench_generalise: {run.pipeline.name} (weights {sha}) on {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"data {args.data}; slab stride {args.stride:g} mm"
    )
    print(
        "Dice per organ ('—': no reference in the case); mean over organs with a reference; "
        "/whole: mean / whole-CT mean (slabs: / whole-CT prediction in the same slab); "
        f"min gap: lowest slab - whole Dice of {', '.join(SHORT[o] for o in GOAL_ORGANS)} "
        f"with >= {MIN_ML:g} mL in the slab"
    )
    print_table(cases, names, whole["mean"])
    if mr_skip:
        print(f"{'MR (held out)':<20} {'held out':<16} skipped: {mr_skip}")
    print_summary(summary)
    print_goals(verdict)
    chest = chest_case(run)
    if chest:
        print(f"\n{chest['name']}: predicted mL (no reference; a bladder here is a phantom)")
        print("  " + ", ".join(f"{SHORT.get(k, k)} {v:g}" for k, v in chest["ml"].items()))
    head = head_case(run, args.data)
    if head:
        print(f"\n{head['name']}: predicted mL (no reference; every organ here is a phantom)")
        print("  " + ", ".join(f"{SHORT.get(k, k)} {v:g}" for k, v in head["ml"].items()))
    calls = run.calls + (mr_run.calls if mr_run else 0)
    seg_s = run.seconds + (mr_run.seconds if mr_run else 0.0)
    print(
        f"\n{len(cases)} cases, {calls} segmentations in {seg_s:.0f} s "
        f"(model load {run.load_s:.1f} s); wall time {wall:.0f} s"
    )
    if args.json:
        out = {
            "pipeline": run.pipeline.name,
            "mr_pipeline": args.mr_pipeline,
            "device": run.segmenter.choice.device,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "stride_mm": args.stride,
            "min_ml": MIN_ML,
            "phantom_ml": PHANTOM_ML,
            "cases": cases,
            "mr_skipped": mr_skip,
            "chest": chest,
            "head": head,
            "slab_summary": summary,
            "goals": verdict,
            "wall_s": wall,
            "segment_s": seg_s,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_jsonable(out), indent=2))
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
