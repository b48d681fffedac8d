"""The device and output switches ``run`` and ``batch`` share, and the
:class:`~medrecon.study.output_options.OutputOptions` they make."""

from __future__ import annotations

import argparse

from medrecon.export import MESH_FORMATS

__all__ = ["add_output_options", "output_options"]


def add_output_options(p: argparse.ArgumentParser, *, mrb_help: str) -> None:
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    # No argparse choices: OutputOptions checks the format, the one place that does.
    p.add_argument(
        "--mesh-format",
        default="stl",
        help=f"surface mesh format: {', '.join(MESH_FORMATS)} (default stl)",
    )
    p.add_argument("--no-dicom-seg", action="store_true", help="do not write seg.dcm")
    p.add_argument("--mrb", action="store_true", help=mrb_help)
    p.add_argument(
        "--outputs",
        default=None,
        help="comma-separated subset of: image, labels, seg_nrrd, meshes, scene, dicom_seg, "
        "stats, preview (default: the pipeline's list)",
    )


def output_options(args: argparse.Namespace):
    """The :class:`~medrecon.study.output_options.OutputOptions` the switches name (checked:
    a bad value raises :class:`~medrecon.errors.InputError`)."""
    from medrecon.study.output_options import OutputOptions

    # "labels, stats" -> ("labels", "stats"); none given: the pipeline's list.
    outputs = [o.strip() for o in args.outputs.split(",") if o.strip()] if args.outputs else None
    return OutputOptions(
        mesh_format=args.mesh_format,
        dicom_seg=not args.no_dicom_seg,
        mrb=args.mrb,
        outputs=outputs,
    )
