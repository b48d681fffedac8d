"""``medrecon info INPUT``: the series found and the files left out, with reasons."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from medrecon.cli.convert import add_vendor_options

if TYPE_CHECKING:  # pragma: no cover - typing only
    from medrecon.io.report import ScanReport

__all__ = ["add_parser", "format_report", "main"]

_MAX_EXAMPLES = 3


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="list the series in a DICOM folder/zip or image file")
    p.add_argument("input", help="DICOM folder, zip, DICOMDIR, DICOM file, NIfTI, NRRD or MHA")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_vendor_options(p)  # as for convert: the listed volumes are those it would write
    p.set_defaults(run=run)
    return p


def _fmt_spacing(spacing: Sequence[float]) -> str:
    return "x".join(f"{s:.3g}" for s in spacing)


def format_report(report: ScanReport) -> str:
    """A plain-text table of the series and a summary of the skipped files."""
    header = ("#", "description", "mod", "size", "spacing (mm)", "slices", "orient", "notes")
    rows = []
    for s in report.series:
        extra = ", ".join(f"{k}={v}" for k, v in s.distinguishing.items())
        desc = s.description + (f" [{extra}]" if extra else "")
        rows.append(
            (
                "" if s.series_number is None else str(s.series_number),
                desc[:40],
                s.modality,
                "x".join(str(n) for n in s.shape),
                _fmt_spacing(s.spacing),
                str(s.n_slices),
                s.orientation,
                f"{len(s.warnings)} warning(s)" if s.warnings else "",
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"{report.path}: {report.n_files} file(s), {len(report.series)} volume(s)"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    for s in report.series:
        for w in s.warnings:
            lines.append(f"  warning: series {s.series_number} '{s.description}': {w}")
    if report.skipped:
        lines.append(f"{len(report.skipped)} file(s) left out:")
        for reason, count in sorted(report.skipped_by_reason().items(), key=lambda x: -x[1]):
            examples = [s.path for s in report.skipped if s.reason == reason][:_MAX_EXAMPLES]
            more = f", ... ({count - len(examples)} more)" if count > len(examples) else ""
            lines.append(f"  {count} x {reason}: {', '.join(examples)}{more}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from medrecon.io import scan

    report = scan(args.input, philips_scaling=args.philips_scaling, derived_dwi=args.derived_dwi)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["info", *(argv if argv is not None else sys.argv[1:])])
