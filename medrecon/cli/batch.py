"""``medrecon batch INPUT -o OUTDIR``: a cohort of studies, resumable and fault-isolated.

Calls :func:`medrecon.cohort.run_cohort`. Exit code 0 when every study is
complete, 1 when any failed (each has ``OUTDIR/<study>/error.txt``), 2 when the
cohort could not run at all (bad pipeline, no studies, OUTDIR in use).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medrecon.cli.model_options import add_model_options, model_ref
from medrecon.cli.output_options import add_output_options, output_options

__all__ = ["add_parser", "cohort_spec", "main", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "batch",
        help="run a cohort: every study of a folder or manifest, resumable, on this machine or Ray",
    )
    p.add_argument(
        "input", help="folder of study folders, DICOM folder (split by study) or CSV/JSON manifest"
    )
    p.add_argument("-o", "--output", required=True, help="output folder: one sub-folder per study")
    add_model_options(p)
    p.add_argument(
        "--engine", default="local", choices=("local", "ray"), help="where studies run (local)"
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes/actors (local: default 1, 0 = this process; Ray: fill the cluster)",
    )
    p.add_argument(
        "--gpus-per-study",
        type=float,
        default=None,
        help="Ray: GPU share per actor, e.g. 0.5 = two studies per GPU (default 0.5 with GPUs)",
    )
    p.add_argument("--retries", type=int, default=2, help="retries per failed study (default 2)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per worker (default: CPUs/workers)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds a study may take before its worker is killed and it is retried",
    )
    p.add_argument("--force", action="store_true", help="redo studies that are already complete")
    p.add_argument(
        "--force-domain",
        action="store_true",
        help="segment studies of another modality or body part than the pipeline's anyway "
        "(run's --force)",
    )
    p.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "folders", "dicom"),
        help="how to read a folder INPUT: auto, folders (one study per sub-folder), dicom "
        "(split by StudyInstanceUID)",
    )
    add_output_options(p, mrb_help="also pack each scene into scene.mrb")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def cohort_spec(args: argparse.Namespace):
    """The :class:`~medrecon.cohort.spec.CohortSpec` the options name (checked)."""
    from medrecon.cohort.spec import CohortSpec, EngineSettings, Reporting, StudySettings

    return CohortSpec(
        study=StudySettings(
            model=model_ref(args),
            device=args.device,
            force_domain=args.force_domain,
            output_options=output_options(args),
        ),
        engine=EngineSettings(
            kind=args.engine,
            workers=args.workers,
            address=args.address,
            gpus_per_study=args.gpus_per_study,
            retries=args.retries,
            threads=args.threads,
            timeout=args.timeout,
        ),
        reporting=Reporting(progress=not args.no_progress),
        force=args.force,
        layout=args.layout,
    )


def run(args: argparse.Namespace) -> int:
    from medrecon.cohort import run_cohort

    result = run_cohort(args.input, args.output, cohort_spec(args))
    resumed = sum(1 for r in result.records if r.resumed)
    print(
        f"{result.outdir}: {len(result.complete)} complete ({resumed} from an earlier run), "
        f"{len(result.failed)} failed, in {result.seconds:.1f} s; table {result.cohort_csv}"
    )
    for record in result.failed:
        where = result.outdir / record.study / "error.txt"
        print(f"failed: {record.study}: {record.error} (see {where})")
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["batch", *(argv if argv is not None else sys.argv[1:])])
