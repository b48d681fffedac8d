"""``medrecon run INPUT -o OUTDIR``: a study in, every Slicer-ready output out.

Calls :func:`medrecon.study.runner.run_study` and shows on stderr each stage with its
time as it finishes, and the steps inside long ones (files read, windows segmented).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medrecon.cli.model_options import add_model_options, model_ref
from medrecon.cli.output_options import add_output_options, output_options
from medrecon.cli.reconstruct_options import add_reconstruct_options, reconstruct_options
from medrecon.progress import StageProgress

__all__ = ["add_parser", "main", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run", help="segment a study and write Slicer-ready outputs (labels, meshes, scene...)"
    )
    p.add_argument("input", help="DICOM folder/zip/file, NIfTI, NRRD or MHA")
    p.add_argument("-o", "--output", required=True, help="output folder (must not exist)")
    add_model_options(p)
    p.add_argument(
        "--series", default=None, help="series number or UID (default: the one the pipeline fits)"
    )
    add_output_options(p, mrb_help="also pack the scene into scene.mrb")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output folder of an earlier medrecon run (never other files)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="segment a study of another modality or body part than the pipeline's anyway",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show stages as they finish")
    add_reconstruct_options(p)
    p.set_defaults(run=run)
    return p


#: Stages and their steps, to stderr (looked up when written, so a test's capture sees them).
_progress = StageProgress()


def run(args: argparse.Namespace) -> int:
    from medrecon.study.runner import run_study

    options = output_options(args)  # checked before anything is printed or read
    recon = reconstruct_options(args)
    if not args.no_progress:
        print(f"medrecon run: {args.input} -> {args.output}", file=sys.stderr, flush=True)
    result = run_study(
        args.input,
        args.output,
        model=model_ref(args),
        device=args.device,
        series=args.series,
        output_options=options,
        overwrite=args.overwrite,
        force=args.force,
        progress=None if args.no_progress else _progress,
        reconstruct=recon,
    )
    found = ", ".join(result.labels_found) or "none"
    total = sum(v for k, v in result.timings.items() if "." not in k)
    print(f"{result.outdir}: {len(result.outputs) + 1} files; labels found: {found}")
    print(
        f"series {result.series_number} ({result.series_uid}); model {result.pipeline} "
        f"({result.pipeline_choice}); device {result.device}; {total:.1f} s"
    )
    rec = result.reconstruction
    if rec is not None and "skipped" not in rec:
        out = rec["output"]
        shape = "x".join(str(n) for n in out["shape"])
        spacing = "x".join(f"{s:.3g}" for s in out["spacing_mm"])
        factors = ", ".join(f"{s['factor']}x" for s in rec.get("stacks", []))
        print(f"reconstructed ({rec['method']}, factor {factors}): {shape} at {spacing} mm")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["run", *(argv if argv is not None else sys.argv[1:])])
