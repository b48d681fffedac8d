"""``medrecon reconstruct STACK [STACK ...] -o OUT.nii.gz``: thick stacks in, one volume out.

Calls :func:`medrecon.superres.api.reconstruct` and writes the volume and its JSON
sidecar (``OUT.json``: method, factors, slice profile, training steps and loss,
timings, warnings) with :func:`~medrecon.superres.api.write_reconstruction`, each
file atomically. ``--scene DIR`` also writes a Slicer scene folder with the source
stacks and the result (:mod:`medrecon.export.reconstruction_scene`). See
docs/reconstruct.md, "Command line".
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from medrecon.errors import InputError, OutputExistsError

__all__ = ["add_parser", "main", "run"]

logger = logging.getLogger(__name__)

_METHODS = ("network", "bspline", "linear")  # medrecon.superres.api.METHODS, read lazily


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reconstruct",
        help="reconstruct one fine volume from thick or gapped slice stacks (docs/reconstruct.md)",
    )
    p.add_argument(
        "stacks", nargs="+", metavar="STACK", help="DICOM folder/zip/file, NIfTI, NRRD or MHA"
    )
    p.add_argument("-o", "--output", required=True, help="volume to write (.nii.gz); + OUT.json")
    p.add_argument(
        "--series",
        action="append",
        default=None,
        help="series number or UID: once for every stack, or once per stack in order",
    )
    grid = p.add_mutually_exclusive_group()
    grid.add_argument(
        "--spacing",
        type=float,
        default=None,
        metavar="MM",
        help="isotropic output spacing (default: the finest in-plane spacing of the stacks)",
    )
    grid.add_argument(
        "--like", default=None, metavar="IMAGE", help="put the output exactly on IMAGE's grid"
    )
    p.add_argument(
        "--method",
        default="network",
        choices=_METHODS,
        help="network (default: B-spline + learned correction) or the bspline / linear baselines",
    )
    p.add_argument(
        "--profile",
        default="box",
        choices=("box", "gaussian"),
        help="slice profile: box (default) or gaussian (FWHM = the thickness)",
    )
    p.add_argument(
        "--thickness",
        type=float,
        default=None,
        metavar="MM",
        help="slice thickness (default: the header's SliceThickness, else the slice spacing)",
    )
    weights = p.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights", default=None, metavar="FILE", help="network weights (default: the shipped)"
    )
    weights.add_argument(
        "--no-pretrained",
        action="store_true",
        help="start from an untrained network (B-spline + what the fine-tune learns)",
    )
    tune = p.add_mutually_exclusive_group()
    tune.add_argument(
        "--no-finetune", action="store_true", help="apply the pretrained network as shipped"
    )
    tune.add_argument(
        "--finetune-steps",
        type=int,
        default=None,
        metavar="N",
        help="fine-tune steps on the stack's own in-plane detail (default 300)",
    )
    p.add_argument(
        "--no-register",
        action="store_true",
        help="several stacks: trust the headers' positions instead of registering each "
        "stack rigidly to the first",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="random seed for the fine-tune (default 0)")
    p.add_argument(
        "--scene",
        default=None,
        metavar="DIR",
        help="also write a Slicer scene folder DIR (DIR/scene.mrml: the stacks and the result)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(run=run)
    return p


def _inside(path: Path, inputs: Sequence[Path]) -> Path | None:
    """The input ``path`` is, or lies inside (a DICOM folder), if any."""
    target = path.resolve()
    for source in inputs:
        src = source.resolve()
        if target == src or src in target.parents:
            return source
    return None


def _check_outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The output and sidecar paths, refused when they would touch an input or an
    existing file (without ``--overwrite``)."""
    from medrecon.superres.api import sidecar_path

    output = Path(args.output)
    sidecar = sidecar_path(output)
    inputs = [Path(s) for s in args.stacks] + ([Path(args.like)] if args.like else [])
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise InputError(f"{', '.join(missing)}: no such file or folder")
    for path in (output, sidecar):
        hit = _inside(path, inputs)
        if hit is not None:
            raise InputError(
                f"output {path} is (or lies inside) the input {hit}; choose an output outside "
                "the inputs so they can never be overwritten"
            )
    if args.scene:
        scene = Path(args.scene)
        hit = _inside(scene, inputs)
        if hit is not None or any(_inside(src, [scene]) for src in inputs):
            raise InputError(f"scene folder {scene} and the inputs must not contain each other")
        from medrecon.export.reconstruction_scene import check_scene_folder

        check_scene_folder(scene, args.overwrite)  # before any stack is read
    existing = [str(p) for p in (output, sidecar) if p.exists()]
    if existing and not args.overwrite:
        raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --overwrite to replace")
    return output, sidecar


def _series(args: argparse.Namespace) -> list[str | None] | None:
    if not args.series:
        return None
    if len(args.series) == 1:
        return list(args.series) * len(args.stacks)
    if len(args.series) != len(args.stacks):
        raise InputError(
            f"{len(args.series)} --series for {len(args.stacks)} stacks: give one for every "
            "stack, or one per stack in order"
        )
    return list(args.series)


def _check_stacks(stacks) -> None:
    from medrecon.superres import ReconstructError

    for path, stack in zip((s.meta.extra.get("input_path") for s in stacks), stacks):
        if stack.array.ndim != 3:
            raise ReconstructError(
                f"{path}: the stack is 4D {stack.shape} ({stack.meta.frame_axis or 'frames'}); "
                "reconstruct takes 3D stacks. Pass --series to choose a 3D series."
            )


def _describe_stack(index: int, entry: dict) -> str:
    p = entry.get("slice_profile") or {}
    text = (
        f"stack {index} ({entry.get('input') or 'given volume'}): factor {entry.get('factor')}x "
        f"along axis {entry.get('thick_axis')}, {p.get('kind')} profile "
        f"{p.get('thickness_mm', 0):g} mm every {p.get('spacing_mm', 0):g} mm "
        f"({p.get('relation')})"
    )
    ft = entry.get("finetune")
    if ft:
        text += f"; fine-tune {ft['steps']} steps, loss {ft['first_loss']:.4g} -> "
        text += f"{ft['last_loss']:.4g}"
    elif entry.get("weights") not in (None, "", "bspline", "linear"):
        text += "; no fine-tune"
    return text


def run(args: argparse.Namespace) -> int:
    from medrecon.pipeline.device import resolve_device
    from medrecon.superres.api import load_stacks, reconstruct, write_reconstruction

    output, sidecar_path = _check_outputs(args)
    series = _series(args)
    if args.finetune_steps is not None and args.finetune_steps < 1:
        raise InputError(f"--finetune-steps must be 1 or more, got {args.finetune_steps}")
    device = resolve_device(args.device).device
    stacks = load_stacks(args.stacks, series)
    _check_stacks(stacks)
    result = reconstruct(
        stacks,
        spacing=args.spacing,
        like=Path(args.like) if args.like else None,
        method=args.method,
        kind=args.profile,
        thickness=args.thickness,
        weights=None if args.no_pretrained else (args.weights or "default"),
        finetune=not args.no_finetune,
        finetune_steps=300 if args.finetune_steps is None else args.finetune_steps,
        device=device,
        seed=args.seed,
        register=not args.no_register,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    write_reconstruction(result, output)
    logger.info("wrote %s and %s", output, sidecar_path)
    scene = None
    if args.scene:
        from medrecon.export.reconstruction_scene import write_reconstruction_scene

        scene = write_reconstruction_scene(
            args.scene, result.volume, result.stacks, result.sidecar, overwrite=args.overwrite
        )
    _summary(result.sidecar, output, sidecar_path, scene, device)
    return 0


def _summary(sidecar: dict, output: Path, sidecar_path: Path, scene, device: str) -> None:
    out = sidecar["output"]
    shape = "x".join(str(n) for n in out["shape"])
    spacing = "x".join(f"{s:.3g}" for s in out["spacing_mm"])
    print(
        f"{output}: {shape} voxels at {spacing} mm; method {sidecar['method']}; device "
        f"{device}; {sidecar['seconds']:.1f} s (sidecar {sidecar_path})"
    )
    for index, entry in enumerate(sidecar.get("stacks", []), start=1):
        print(_describe_stack(index, entry))
    if scene is not None:
        print(f"scene: {scene}")
    for warning in sidecar.get("warnings", []):
        print(f"warning: {warning}")


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["reconstruct", *(argv if argv is not None else sys.argv[1:])])
