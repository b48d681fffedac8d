"""medrecon's segmentation engine vs a plain MONAI loop doing the same job, side by side.

Input: the real CT ``../shared/data/ct-abdomen/ct.nii.gz`` (122x101x112 @ 3 mm) resampled
linearly onto 512x512x300 over the same field of view (int16 HU), made once. Network: the
abdomen-ct pipeline's network with its shipped weights (``--random-weights``: seeded random
ones), copied to a temp file both sides load (not timed).
Both sides start from the same ``medrecon.Volume`` and end with uint8 labels on its grid:

  medrecon         Segmenter(abdomen-ct without its refine steps)(volume)   like for like
  medrecon+refine  the same with the refine steps                           extra
  monai            the MONAI tutorial way: Compose(Orientationd, Spacingd, ScaleIntensityRanged,
                   CropForegroundd) -> sliding_window_inference(gaussian) -> Invertd + AsDiscreted

One warm-up each, then ``--repeats`` rounds in turn. Printed: medians, ratios, voxels/s,
network vs other time, stages, label agreement, peak RSS per side (fresh child process) and
the network's FLOPs. ``--device cuda``: the same on the GPU, AMP on and off, with peak GPU
memory and network time against the FLOP bound (``--peak-tflops``).

Run from the repository root::

    python benchmarks/bench_infer.py [--shape 512 512 300] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
CT = REPO.parent / "shared" / "data" / "ct-abdomen" / "ct.nii.gz"
GOAL = 1.10
PEAK_TFLOPS = {"bfloat16": 989.0, "float32": 67.0}  # H100 SXM, dense
SEED = 0
log = logging.getLogger("bench_infer")


def make_volume(shape: tuple[int, int, int]):
    """The real CT resampled (linear) onto ``shape`` voxels over the same field of view."""
    from scipy import ndimage

    from medrecon.io.nifti import read_nifti
    from medrecon.volume import Volume, VolumeMeta

    if not CT.is_file():
        sys.exit(f"bench_infer: input CT {CT} not found (../shared/data next to the repo root)")
    src = read_nifti(CT)
    factors = np.asarray(shape, float) / np.asarray(src.spatial_shape, float)
    hu = src.array.astype(np.float32)
    arr = ndimage.zoom(hu, factors, order=1, mode="nearest", grid_mode=True)
    scale = 1.0 / factors  # new voxel i sits at old index (i + 0.5) * scale - 0.5
    step = np.eye(4)
    step[:3, :3], step[:3, 3] = np.diag(scale), 0.5 * scale - 0.5
    meta = VolumeMeta(modality="CT", description="bench_infer CT")
    return Volume(np.rint(arr).astype(np.int16), src.affine @ step, meta)


def make_pipeline(weights: Path, save: bool, random: bool = False):
    """abdomen-ct with its weights read from ``weights``, which ``save`` writes first: a
    copy of the shipped weights, or seeded random ones (``random``)."""
    import shutil

    from medrecon.pipeline.config import WeightsSpec
    from medrecon.pipeline.model import build_network
    from medrecon.pipeline.registry import load_pipeline

    pipeline = load_pipeline("abdomen-ct", check_weights=not random)
    if save and random:
        torch.manual_seed(SEED)
        torch.save(build_network(pipeline.network).state_dict(), weights)
    elif save:
        shutil.copyfile(pipeline.weights.path, weights)
    return replace(pipeline, weights=WeightsSpec(path=weights, sha256=None))


class TimedNet(torch.nn.Module):
    """Wraps a network; adds up its forward time (CUDA events on the GPU) and windows seen."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.reset()

    def reset(self) -> None:
        self.cpu_s, self.events, self.windows = 0.0, [], 0

    def forward(self, x):
        self.windows += int(x.shape[0])
        if x.is_cuda:
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            out = self.net(x)
            end.record()
            self.events.append((start, end))
            return out
        t0 = time.perf_counter()
        out = self.net(x)
        self.cpu_s += time.perf_counter() - t0
        return out

    def seconds(self) -> float:
        if self.events:
            torch.cuda.synchronize()
        return self.cpu_s + sum(s.elapsed_time(e) for s, e in self.events) / 1000.0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class MedreconSide:
    def __init__(self, pipeline, device: str, amp: bool | None, refine: bool):
        from medrecon.pipeline.segment import Segmenter

        pipe = pipeline if refine else replace(pipeline, refine=())
        self.seg = Segmenter(pipe, device=device, amp=amp)
        self.net = self.seg.net = TimedNet(self.seg.net)

    def __call__(self, volume):
        result = self.seg(volume)
        return result.labels.array, result.timings


def _body(x):
    return x > x.min()  # after the clipped window, air sits at the minimum


class MonaiSide:
    """The spleen-tutorial pattern with MONAI's public API, on the pipeline's settings.

    ``softmax`` adds Activationsd(softmax) before Invertd (the tutorial interpolates
    logits); used once, untimed, to check agreement with medrecon's probabilities.
    """

    def __init__(self, pipeline, device: str, amp: bool | None, softmax: bool = False):
        from monai import transforms as mt
        from monai.networks import nets

        pre, self.spec, self.device = pipeline.preprocess, pipeline.inference, device
        lo, hi = pre.intensity.window
        self.pre = mt.Compose([
            mt.Orientationd(keys="image", axcodes="RAS", labels=None),
            mt.Spacingd(keys="image", pixdim=pre.spacing, mode="bilinear"),
            mt.ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0,
                                    clip=True),
            mt.CropForegroundd(keys="image", source_key="image", select_fn=_body,
                               margin=pre.crop_margin, allow_smaller=True),
        ])  # fmt: skip
        self.post = mt.Compose([
            *([mt.Activationsd(keys="pred", softmax=True)] if softmax else []),
            mt.Invertd(keys="pred", transform=self.pre, orig_keys="image", nearest_interp=False),
            mt.AsDiscreted(keys="pred", argmax=True),
        ])  # fmt: skip
        net = getattr(nets, pipeline.network.name)(spatial_dims=3, **pipeline.network.args)
        state = torch.load(pipeline.weights.path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.net = TimedNet(net.eval().to(device))
        on = device.startswith("cuda") if amp is None else amp
        dev_type = torch.device(device).type
        self.autocast = lambda: (
            torch.autocast(dev_type, dtype=torch.bfloat16) if on else contextlib.nullcontext()
        )

    def __call__(self, volume):
        from monai.inferers import sliding_window_inference

        t0 = time.perf_counter()
        data = self.pre({"image": volume.to_metatensor().float()})
        t1 = time.perf_counter()
        with torch.inference_mode():
            with self.autocast():
                x, spec = data["image"].unsqueeze(0).to(self.device), self.spec
                args = (spec.roi_size, spec.sw_batch_size, self.net, spec.overlap, "gaussian")
                pred = sliding_window_inference(x, *args, spec.sigma_scale)
            data["pred"] = pred[0].float()
            _sync(self.device)
            t2 = time.perf_counter()
            labels = self.post(data)["pred"][0].cpu().numpy().astype(np.uint8)
        t3 = time.perf_counter()
        return labels, {"preprocess": t1 - t0, "inference": t2 - t1, "invert+argmax": t3 - t2}


def build_side(name: str, pipeline, device: str, amp: bool | None):
    if name == "monai":
        return MonaiSide(pipeline, device, amp)
    return MedreconSide(pipeline, device, amp, refine=name == "medrecon+refine")


def timed_call(side, volume, device: str) -> dict:
    side.net.reset()
    cuda = device.startswith("cuda")
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    labels, stages = side(volume)
    _sync(device)
    wall = time.perf_counter() - t0
    gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return {"labels": labels, "stages": stages, "wall": wall, "net": side.net.seconds(), "gpu": gpu}


def compare(pipeline, volume, device: str, amp: bool | None, names, repeats: int) -> dict:
    """Warm-up each side and check agreement, then ``repeats`` rounds in turn; the figures."""
    sides = {n: build_side(n, pipeline, device, amp) for n in names}
    warm = {}
    for name, side in sides.items():
        r = timed_call(side, volume, device)
        warm[name] = r["labels"]
        log.info("warm-up %s: %.2f s (%d windows)", name, r["wall"], side.net.windows)
    a, b = warm["medrecon"], warm["monai"]
    ag = {
        "shapes": {n: list(v.shape) for n, v in warm.items()},
        "fraction": float(np.mean(a == b)) if a.shape == b.shape else None,
        "label_counts": {n: np.bincount(v.ravel(), minlength=2).tolist() for n, v in warm.items()},
    }
    soft, _ = MonaiSide(pipeline, device, amp, softmax=True)(volume)
    ag["fraction_softmax_peer"] = float(np.mean(soft == warm["medrecon"]))
    del warm, soft
    runs: dict[str, list[dict]] = {n: [] for n in sides}
    for i in range(repeats):
        for name, side in sides.items():
            r = timed_call(side, volume, device)
            del r["labels"]
            runs[name].append(r)
        last = "  ".join(f"{n} {v[-1]['wall']:.2f}s" for n, v in runs.items())
        log.info("round %d/%d: %s", i + 1, repeats, last)
    n_vox = math.prod(volume.spatial_shape)
    stats = {}
    for name, rs in runs.items():
        walls = [r["wall"] for r in rs]
        med = statistics.median(walls)
        stats[name] = {
            "median_s": med,
            "min_s": min(walls),
            "runs_s": walls,
            "voxels_per_s": n_vox / med,
            "network_s": statistics.median(r["net"] for r in rs),
            "stages_s": {k: statistics.median(r["stages"][k] for r in rs) for k in rs[0]["stages"]},
            "gpu_peak_mib": max(r["gpu"] for r in rs) if rs[0]["gpu"] is not None else None,
        }
    base = stats["monai"]["median_s"]
    ratios = {f"{n}/monai": s["median_s"] / base for n, s in stats.items() if n != "monai"}
    return {"stats": stats, "ratios": ratios, "agreement": ag}


def _vm(field: str) -> float:
    """This process's /proc/self/status figure in MiB (VmHWM starts afresh at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(name: str, workdir: Path) -> None:
    from medrecon.volume import Volume

    volume = Volume(np.load(workdir / "volume.npy"), np.load(workdir / "affine.npy"))
    side = build_side(name, make_pipeline(workdir / "weights.pt", save=False), "cpu", None)
    before = _vm("VmRSS")
    side(volume)
    print(json.dumps({"before_call_mib": before, "peak_mib": _vm("VmHWM")}))


def peak_rss(name: str, workdir: Path) -> dict:
    cmd = [sys.executable, __file__, "--only", name, "--workdir", str(workdir)]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def count_flops(pipeline) -> dict:
    """FLOPs (2 x MACs) of conv and transposed-conv layers for one roi window, by class."""
    from medrecon.pipeline.model import build_network

    net, roi = build_network(pipeline.network).eval(), pipeline.inference.roi_size
    flops: dict[str, int] = {}
    layers: dict[str, int] = {}

    def hook(mod, inp, out):
        kind, k = type(mod).__name__, math.prod(mod.kernel_size)
        if isinstance(mod, torch.nn.modules.conv._ConvTransposeNd):  # each input voxel
            macs = inp[0].numel() * (mod.out_channels // mod.groups) * k
        else:  # each output voxel
            macs = out.numel() * (mod.in_channels // mod.groups) * k
        flops[kind] = flops.get(kind, 0) + 2 * macs
        layers[kind] = layers.get(kind, 0) + 1

    convs = [m for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    handles = [m.register_forward_hook(hook) for m in convs]
    with torch.inference_mode():
        net(torch.zeros(1, 1, *roi))
    for h in handles:
        h.remove()
    return {"per_class": flops, "layers": layers, "window": sum(flops.values())}


def window_grid(shape, roi, overlap) -> list[int]:
    """Windows per axis as MONAI's sliding_window_inference lays them out."""
    steps = [max(int(r * (1 - overlap)), 1) for r in roi]
    return [1 if n <= r else math.ceil((n - r) / s) + 1 for n, r, s in zip(shape, roi, steps)]


def print_flops(fl: dict, grid: list[int], model_shape, spec) -> int:
    passes, n_win = 1 + len(spec.tta_flips), math.prod(grid)
    total = fl["window"] * n_win * passes
    roi = "x".join(map(str, spec.roi_size))
    print(f"\nFLOPs per {roi} window (2 x MACs, conv layers only; norms/activations not counted):")
    for kind, f in fl["per_class"].items():
        print(f"  {kind:<16}{fl['layers'][kind]:>3} layers {f / 1e9:>9.2f} GFLOP")
    print(f"  {'total':<26}{fl['window'] / 1e9:>9.2f} GFLOP")
    step = max(int(spec.roi_size[0] * (1 - spec.overlap)), 1)
    print(
        f"windows: model grid {'x'.join(map(str, model_shape))}, roi {roi}, overlap "
        f"{spec.overlap} (step {step}) -> {' x '.join(map(str, grid))} = {n_win}; "
        f"passes 1 + {passes - 1} TTA flips\ntotal: {n_win} x {passes} x "
        f"{fl['window'] / 1e9:.2f} GFLOP = {total / 1e12:.3f} TFLOP"
    )
    return total


def report(title: str, sec: dict, rss: dict) -> None:
    stats, ag = sec["stats"], sec["agreement"]
    print(f"\n{title}")
    print(
        f"{'side':<16}{'median s':>9}{'min s':>8}{'/monai':>7}{'Mvox/s':>8}{'net s':>8}"
        f"{'other s':>8}{'peak MiB':>9}"
    )
    for name, s in stats.items():
        peak = rss[name]["peak_mib"] if name in rss else s["gpu_peak_mib"]
        print(
            f"{name:<16}{s['median_s']:>9.2f}{s['min_s']:>8.2f}"
            f"{s['median_s'] / stats['monai']['median_s']:>7.2f}{s['voxels_per_s'] / 1e6:>8.2f}"
            f"{s['network_s']:>8.2f}{s['median_s'] - s['network_s']:>8.2f}"
            f"{'-' if peak is None else f'{peak:.0f}':>9}"
        )
    for name, s in stats.items():
        print(f"  stages {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in s["stages_s"].items()))
    for name, r in rss.items():
        print(f"  RSS {name}: before the call {r['before_call_mib']:.0f} MiB")
    if ag["fraction"] is None:
        print(f"label maps: SHAPE MISMATCH {ag['shapes']}")
    else:
        print(
            f"label agreement medrecon vs monai on the native grid {ag['shapes']['monai']}: "
            f"{ag['fraction']:.6f} (tutorial: logits interpolated); with softmax before "
            f"Invertd: {ag['fraction_softmax_peer']:.6f}"
        )
    for name, counts in ag["label_counts"].items():
        print(f"  voxels per label {name}: {counts}")
    for key, r in sec["ratios"].items():
        goal = f"goal <= {GOAL}: {'met' if r <= GOAL else 'NOT met'}"
        print(f"ratio {key} of medians: {r:.2f} ({goal if key == 'medrecon/monai' else 'extra'})")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300), help="native grid")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up (3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--peak-tflops", type=float, help="peak for the FLOP bound (989 bf16, 67 fp32)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the figures as JSON")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="seeded random weights instead of the shipped ones (time does not depend on "
        "them, but refinement does: random labels are its worst case)",
    )
    p.add_argument("--only", help=argparse.SUPPRESS)  # child: one call, print its peak RSS
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1 or min(args.shape) < 2:
        p.error("--repeats must be >= 1 and every --shape entry >= 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.only:
        child(args.only, args.workdir)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("medrecon").setLevel(logging.WARNING)
    import monai

    from medrecon.pipeline.preprocess import prepare_input

    t0 = time.perf_counter()
    volume = make_volume(tuple(args.shape))
    log.info("made the input CT in %.1f s: %r", time.perf_counter() - t0, volume)
    out: dict = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "monai": monai.__version__},
        "shape": list(args.shape), "spacing_mm": list(volume.spacing), "repeats": args.repeats,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
        workdir = Path(tmp)
        pipeline = make_pipeline(workdir / "weights.pt", save=True, random=args.random_weights)
        out["weights"] = "random (seeded)" if args.random_weights else "shipped"
        spec = pipeline.inference
        model_shape = prepare_input(volume, pipeline.preprocess).spatial_shape
        grid = window_grid(model_shape, spec.roi_size, spec.overlap)
        print(f"input {volume!r}; torch {torch.__version__}, {torch.get_num_threads()} threads")
        fl = count_flops(pipeline)
        total = print_flops(fl, grid, model_shape, spec)
        out["flops"] = {**fl, "grid": grid, "model_shape": list(model_shape), "total": total}
        if args.device == "cuda" and not torch.cuda.is_available():
            log.warning("--device cuda: CUDA is not available here; GPU comparison skipped")
        elif args.device == "cpu":
            names = ("medrecon", "medrecon+refine", "monai")
            sec = compare(pipeline, volume, "cpu", None, names, args.repeats)
            rss = {}
            if not args.no_rss:
                np.save(workdir / "volume.npy", volume.array)
                np.save(workdir / "affine.npy", volume.affine)
                rss = {n: peak_rss(n, workdir) for n in names}
            out["cpu"], out["peak_rss"] = sec, rss
            report(f"CPU, {args.repeats} rounds (peak MiB: RSS of 1 call, fresh process)", sec, rss)
            net = sec["stats"]["medrecon"]["network_s"]
            print(f"CPU network: {total / 1e9:.0f} GFLOP in {net:.2f} s = "
                  f"{total / net / 1e9:.1f} GFLOP/s")  # fmt: skip
        else:
            for amp in (True, False):
                dtype = "bfloat16" if amp else "float32"
                sec = compare(pipeline, volume, "cuda", amp, ("medrecon", "monai"), args.repeats)
                peak = args.peak_tflops or PEAK_TFLOPS[dtype]
                bound = total / (peak * 1e12)
                out[f"cuda_{dtype}"] = {**sec, "peak_tflops": peak, "flop_bound_s": bound}
                report(f"GPU, AMP {'on' if amp else 'off'} ({dtype}), {args.repeats} rounds "
                       "(peak MiB: torch.cuda.max_memory_allocated)", sec, {})  # fmt: skip
                print(f"FLOP bound at {peak:g} TFLOP/s ({dtype}, "
                      f"{'--peak-tflops' if args.peak_tflops else 'default'}; cudnn.allow_tf32="
                      f"{torch.backends.cudnn.allow_tf32}) = {bound * 1e3:.2f} ms")  # fmt: skip
                for name, s in sec["stats"].items():
                    net, other = s["network_s"], s["median_s"] - s["network_s"]
                    print(f"  {name}: network time / FLOP bound = {net / bound:.1f}; "
                          f"everything else on the GPU path {other:.3f} s")  # fmt: skip
                torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str))
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
