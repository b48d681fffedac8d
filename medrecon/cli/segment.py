"""``medrecon segment INPUT -o LABELS.nii.gz``: organ labels on the input's own grid.

Writes the label map (NIfTI, sform = qform, code 1) and a Slicer colour
table beside it. ``medrecon run`` builds the full set of outputs on top of this.
Without ``--model`` (or ``--pipeline`` / ``--bundle``) the model is ``auto``:
the shipped pipeline made for the volume's modality.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from medrecon.cli.model_options import add_model_options, model_ref
from medrecon.errors import InputError, OutputExistsError

__all__ = ["add_parser", "main", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("segment", help="segment organs; labels on the input's native grid")
    p.add_argument("input", help="DICOM folder/zip/file, NIfTI, NRRD or MHA")
    p.add_argument("-o", "--output", required=True, help="label map to write (.nii.gz)")
    add_model_options(p, bundle=True)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    p.add_argument("--series", default=None, help="series number or UID, when there are several")
    p.add_argument(
        "--probabilities", default=None, help="also write class probabilities (4D NIfTI) here"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--force",
        action="store_true",
        help="segment a volume of another modality or body part than the pipeline's anyway",
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from medrecon.export.colortable import write_ctbl
    from medrecon.io import load
    from medrecon.io.nifti import write_nifti
    from medrecon.labels.plausibility import volume_warnings
    from medrecon.models.engines import build_engine
    from medrecon.models.resolve import resolve_model
    from medrecon.pipeline.auto import choose_pipeline
    from medrecon.pipeline.domain import check_domain

    output = Path(args.output)
    if not output.name.endswith((".nii", ".nii.gz")):
        raise InputError(f"output {output} must be a .nii or .nii.gz file")
    table = output.with_name(output.name.split(".nii")[0] + ".ctbl")
    outputs = [output, table] + ([Path(args.probabilities)] if args.probabilities else [])
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --overwrite to replace")
    ref = model_ref(args)
    # An explicit model is read first: a bad one fails before the study is read.
    found = None if ref.is_auto else resolve_model(ref)
    volume = load(args.input, series=args.series)
    notes: list[str] = []
    if found is None:
        choice = choose_pipeline(volume, where=str(args.input))
        print(f"model {choice.name} ({choice.reason})")
        found, notes = resolve_model(ref.with_ref(choice.path)), list(choice.warnings)
    else:
        print(f"model: {found.found}")
    pipeline = found.pipeline
    notes += check_domain(volume, pipeline, where=str(args.input), force=args.force).warnings
    engine = build_engine(pipeline, device=args.device, amp=False if args.no_amp else None)
    seg = engine(volume, probabilities=bool(args.probabilities))
    seg.warnings[:0] = notes
    seg.warnings += volume_warnings(seg.labels.array, seg.labels.voxel_ml, pipeline.labels)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(seg.labels, output)
    write_ctbl(table, seg.label_table)
    if args.probabilities:
        write_nifti(seg.probabilities, Path(args.probabilities))
    found = ", ".join(lab.name for lab in seg.present_labels()) or "none"
    times = ", ".join(f"{k} {v:.2f} s" for k, v in seg.timings.items())
    print(f"{output}: labels found: {found} (device {seg.device}; {times})")
    for warning in seg.warnings:
        print(f"warning: {warning}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["segment", *(argv if argv is not None else sys.argv[1:])])
