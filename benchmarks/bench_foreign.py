"""Foreign models: medrecon's engine against the model's own runner, same input.

``--kind nnunet``: medrecon's nnU-Net engine against ``nnUNetPredictor``
(``predict_from_files_sequential``, same folds, mirroring on) on one real CT
(``../shared/data/ct-abdomen``) resampled to 512x512x300, file in -> label file
out for both. Each run is a fresh child process (alternating medrecon and
nnU-Net round by round), which reports its wall time, its stage timings and its
peak RSS; the parent prints medians, the ratio and the label agreement.

``--kind bundle``: a model-zoo MONAI bundle (``--bundle``, default
spleen_ct_segmentation, seeded weights) run by medrecon's bundle engine against
``python -m monai.bundle run`` on the same CT (benchmarks/foreign_bundle.py).

    python benchmarks/bench_foreign.py [--kind nnunet|bundle|all] [--folder RESULTS] [--repeats 3]

Without ``--folder`` the tiny nnU-Net model of tests/nnunet_fixture.py is built
(about a minute) under ``--workdir`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _big_ct(workdir: Path, shape: tuple[int, int, int]) -> Path:
    """The shared CT resampled (linear) to ``shape``, same field of view, int16."""
    path = workdir / f"ct_{'x'.join(map(str, shape))}_0000.nii.gz"
    if path.exists():
        return path
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    ct = nib.load(DATA / "ct-abdomen" / "ct.nii.gz")
    array = np.asarray(ct.dataobj).astype(np.float32)
    zoom = [n / o for n, o in zip(shape, array.shape)]
    big = ndimage.zoom(array, zoom, order=1, grid_mode=True, mode="nearest")
    affine = ct.affine.copy()
    affine[:3, :3] = affine[:3, :3] / np.asarray(zoom)
    # Keep the field of view: voxel centres shift by half the old and new voxel.
    affine[:3, 3] = ct.affine[:3, :3] @ (0.5 / np.asarray(zoom) - 0.5) + ct.affine[:3, 3]
    nib.save(nib.Nifti1Image(np.round(big).astype(np.int16), affine), path)
    return path


def _results_folder(workdir: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from nnunet_fixture import DATASET, build_results_folder

    folder = workdir / "nnunet" / "results" / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if not folder.is_dir():
        build_results_folder(workdir / "nnunet", DATA / "ct-abdomen")
    return folder


# -- child processes ----------------------------------------------------------------------


def _child_medrecon(folder: str, image: str, out: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from medrecon.foreign.nnunet import load_nnunet
    from medrecon.io.nifti import read_nifti, write_nifti
    from medrecon.models.engines import build_engine

    t0 = time.perf_counter()
    engine = build_engine(load_nnunet(folder), device="cpu")
    t1 = time.perf_counter()
    volume = read_nifti(image)
    t2 = time.perf_counter()
    seg = engine(volume)
    t3 = time.perf_counter()
    write_nifti(seg.labels, out)
    t4 = time.perf_counter()
    stages = {"load_model": t1 - t0, "read": t2 - t1, **seg.timings, "write": t4 - t3}
    return {"predict_s": t4 - t1, "stages": stages}


def _child_nnunet(folder: str, image: str, out: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    t0 = time.perf_counter()
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_mirroring=True,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(folder, use_folds=None)
    t1 = time.perf_counter()
    predictor.predict_from_files_sequential(
        [[image]], [out.removesuffix(".nii.gz")], save_probabilities=False, overwrite=True
    )
    t2 = time.perf_counter()
    return {"predict_s": t2 - t1, "stages": {"load_model": t1 - t0}}


CHILDREN = {"medrecon": _child_medrecon, "nnunet": _child_nnunet}


def _run_child(kind: str, folder: Path, image: Path, out: Path, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    args = [sys.executable, __file__, "--child", kind, str(folder), str(image), str(out)]
    done = subprocess.run(
        [*args, str(threads)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- kinds --------------------------------------------------------------------------------


def bench_nnunet(args) -> dict:
    import nibabel as nib
    import numpy as np

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(args.folder) if args.folder else _results_folder(workdir)
    image = _big_ct(workdir, tuple(args.shape))
    runs: dict[str, list[dict]] = {"medrecon": [], "nnunet": []}
    for r in range(args.repeats):
        for who in ("medrecon", "nnunet"):
            out = workdir / f"labels_{who}.nii.gz"
            result = _run_child(who, folder, image, out, args.threads)
            runs[who].append(result)
            print(
                f"round {r + 1} {who:9s} {result['predict_s']:7.2f} s  "
                f"peak RSS {result['peak_rss_mib']:7.0f} MiB"
            )
    ours = np.asarray(nib.load(workdir / "labels_medrecon.nii.gz").dataobj)
    theirs = np.asarray(nib.load(workdir / "labels_nnunet.nii.gz").dataobj)
    summary = {
        who: {
            "median_s": statistics.median(r["predict_s"] for r in rs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
        }
        for who, rs in runs.items()
    }
    summary["ratio"] = summary["medrecon"]["median_s"] / summary["nnunet"]["median_s"]
    summary["agreement"] = float((ours == theirs).mean())
    summary["medrecon_stages"] = {
        k: statistics.median(r["stages"][k] for r in runs["medrecon"])
        for k in runs["medrecon"][0]["stages"]
    }
    summary["shape"] = list(args.shape)
    print(f"\nnnU-Net model {folder}")
    print(f"input {image.name}: {args.shape}, {args.threads} threads, {args.repeats} rounds")
    for who in ("medrecon", "nnunet"):
        s = summary[who]
        print(f"  {who:9s} median {s['median_s']:7.2f} s   peak RSS {s['peak_rss_mib']:7.0f} MiB")
    print(f"  ratio medrecon / nnU-Net: {summary['ratio']:.2f}")
    print(f"  label agreement: {100 * summary['agreement']:.3f} %")
    print(
        "  medrecon stages (median s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in summary["medrecon_stages"].items())
    )
    return summary


def bench_bundles(args) -> dict:
    """A model-zoo MONAI bundle: medrecon's bundle engine vs ``monai.bundle run``
    (benchmarks/foreign_bundle.py), same CT, whole processes."""
    sys.path.insert(0, str(Path(__file__).parent))
    from foreign_bundle import bench_bundle

    workdir = Path(args.workdir) / "bundle"
    return bench_bundle(args.bundle, tuple(args.shape), args.repeats, workdir)


KINDS = {"nnunet": bench_nnunet, "bundle": bench_bundles}


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, folder, image, out, threads = sys.argv[2:7]
        result = CHILDREN[kind](folder, image, out, int(threads))
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=[*KINDS, "all"], default="all")
    parser.add_argument("--folder", help="nnU-Net results folder (default: build the tiny one)")
    parser.add_argument("--bundle", default="spleen_ct_segmentation", help="tests/data/bundles/")
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / "_work" / "foreign"))
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"{DATA} not found: the benchmark needs the shared data folder")
        return 2
    kinds = list(KINDS) if args.kind == "all" else [args.kind]
    results = {kind: KINDS[kind](args) for kind in kinds}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
