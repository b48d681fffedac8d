"""``medrecon segment INPUT -o LABELS.nii.gz``: organ labels on the input's own grid.

Writes the label map (NIfTI, sform = qform, code 1) and a Slicer colour
table beside it. ``medrecon run`` builds the full set of outputs on top of this.
Without ``--pipeline`` or ``--bundle`` the pipeline is ``auto``: the shipped one
made for the volume's modality.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from medrecon.errors import InputError, OutputExistsError
from medrecon.pipeline.auto import AUTO, choose_pipeline, is_auto

__all__ = ["add_parser", "main", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("segment", help="segment organs; labels on the input's native grid")
    p.add_argument("input", help="DICOM folder/zip/file, NIfTI, NRRD or MHA")
    p.add_argument("-o", "--output", required=True, help="label map to write (.nii.gz)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--pipeline",
        default=AUTO,
        help="shipped pipeline name or YAML file (see `pipelines`); auto (default): the "
        "shipped pipeline made for the volume's modality (inferred from intensities for "
        "NIfTI/NRRD/MHA)",
    )
    src.add_argument("--bundle", default=None, help="a MONAI bundle folder you downloaded")
    p.add_argument(
        "--trust-bundle",
        action="store_true",
        help="allow the bundle's config to run code (needed with --bundle; only for bundles "
        "you trust)",
    )
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


def _choose_pipeline(args: argparse.Namespace):
    from medrecon.pipeline.registry import load_pipeline

    if args.trust_bundle and not args.bundle:
        raise InputError("--trust-bundle only applies with --bundle DIR")
    if args.bundle:
        from medrecon.foreign.bundle import load_bundle

        return load_bundle(args.bundle, trust=args.trust_bundle)
    if is_auto(args.pipeline):
        return AUTO  # chosen once the volume, and so its modality, is known
    return load_pipeline(args.pipeline)


def run(args: argparse.Namespace) -> int:
    from medrecon.export.colortable import write_ctbl
    from medrecon.io import load
    from medrecon.io.nifti import write_nifti
    from medrecon.pipeline.domain import check_domain
    from medrecon.pipeline.registry import load_pipeline
    from medrecon.pipeline.segment import Segmenter
    from medrecon.plausibility import volume_warnings

    output = Path(args.output)
    if not output.name.endswith((".nii", ".nii.gz")):
        raise InputError(f"output {output} must be a .nii or .nii.gz file")
    table = output.with_name(output.name.split(".nii")[0] + ".ctbl")
    outputs = [output, table] + ([Path(args.probabilities)] if args.probabilities else [])
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --overwrite to replace")
    pipeline = _choose_pipeline(args)
    volume = load(args.input, series=args.series)
    notes: list[str] = []
    if is_auto(pipeline):
        choice = choose_pipeline(volume, where=str(args.input))
        print(f"pipeline {choice.name} ({choice.reason})")
        pipeline, notes = load_pipeline(choice.path), list(choice.warnings)
    notes += check_domain(volume, pipeline, where=str(args.input), force=args.force).warnings
    segmenter = Segmenter(pipeline, device=args.device, amp=False if args.no_amp else None)
    seg = segmenter(volume, probabilities=bool(args.probabilities))
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
