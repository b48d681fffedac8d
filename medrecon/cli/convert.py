"""``medrecon convert INPUT -o OUTDIR``: one NIfTI + JSON sidecar per volume."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["add_parser", "add_vendor_options", "main"]


def add_vendor_options(p: argparse.ArgumentParser) -> None:
    """``--philips-scaling`` and ``--derived-dwi``, shared by ``convert`` and ``info``.

    The choices are :data:`medrecon.io.dicom.philips.PHILIPS_SCALING` and
    ``DERIVED_DWI``, written out so building the parser imports no reader (a test
    checks they agree).
    """
    p.add_argument(
        "--philips-scaling",
        choices=("precise", "display"),
        default="precise",
        help="Philips MR values: precise floating point, display / (RescaleSlope x "
        "ScaleSlope), as dcm2niix (default), or the display values",
    )
    p.add_argument(
        "--derived-dwi",
        choices=("drop", "split", "keep"),
        default="drop",
        help="Philips derived trace/ADC frames in a diffusion series: drop them (default, "
        "as dcm2niix), write them as a separate volume, or keep them in the 4D volume",
    )


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
    add_vendor_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from medrecon.io.convert import convert

    written = convert(
        args.input,
        args.output,
        overwrite=args.overwrite,
        uneven=args.uneven,
        tilt=args.tilt,
        philips_scaling=args.philips_scaling,
        derived_dwi=args.derived_dwi,
    )
    for path in written:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["convert", *(argv if argv is not None else sys.argv[1:])])
