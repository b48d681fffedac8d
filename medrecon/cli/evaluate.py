"""``medrecon evaluate PRED REF``: Dice, HD95 and surface Dice per label, in mm.

PRED and REF are NIfTI label maps (label table beside them), ``.seg.nrrd`` files
or medrecon output folders. Labels are matched by name; a prediction on another
grid is resampled onto the reference grid (nearest neighbour) with a warning.
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


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="score a segmentation against a reference, per label")
    p.add_argument("pred", help="predicted labels: NIfTI, .seg.nrrd or a medrecon output folder")
    p.add_argument("ref", help="reference labels: NIfTI, .seg.nrrd or a medrecon output folder")
    p.add_argument(
        "--labels", default=None, help="comma-separated label names to score (default: all)"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="MM",
        help="surface Dice tolerance in mm (default 2)",
    )
    p.add_argument("--csv", default=None, help="also write the scores as CSV here")
    p.add_argument("--json", default=None, help="also write the scores as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from medrecon.train.evaluate import DEFAULT_TOLERANCE_MM, evaluate

    outputs = [Path(p) for p in (args.csv, args.json) if p]
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --overwrite to replace")
    labels = [n.strip() for n in args.labels.split(",") if n.strip()] if args.labels else None
    if args.labels is not None and not labels:
        raise InputError("--labels is empty; give names such as --labels liver,spleen")
    tolerance = DEFAULT_TOLERANCE_MM if args.tolerance is None else args.tolerance
    result = evaluate(args.pred, args.ref, labels=labels, tolerance_mm=tolerance)
    print(result.table())
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
    if args.csv:
        result.write_csv(args.csv)
        print(f"wrote {args.csv}")
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    return 0  # warnings reached the log (stderr) from evaluate()


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["evaluate", *(argv if argv is not None else sys.argv[1:])])
