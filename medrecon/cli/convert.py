"""``medrecon convert INPUT -o OUTDIR``: one NIfTI + JSON sidecar per volume."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["add_parser", "main"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("convert", help="write each volume as NIfTI with a JSON sidecar")
    p.add_argument("input", help="DICOM folder, zip, DICOMDIR, DICOM file, NIfTI, NRRD or MHA")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "--uneven",
        choices=("resample", "error"),
        default="resample",
        help="uneven slice spacing or missing slices: resample to a uniform grid "
        "(default) or refuse",
    )
    p.add_argument(
        "--tilt",
        choices=("correct", "error"),
        default="correct",
        help="gantry tilt: resample onto an orthogonal grid (default) or refuse",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from medrecon.io.convert import convert

    written = convert(
        args.input, args.output, overwrite=args.overwrite, uneven=args.uneven, tilt=args.tilt
    )
    for path in written:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["convert", *(argv if argv is not None else sys.argv[1:])])
