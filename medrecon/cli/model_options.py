"""``--model`` and the options that go with it, shared by run, segment and batch."""

from __future__ import annotations

import argparse

__all__ = ["add_model_options", "model_ref"]

_MODEL_HELP = (
    "the model: auto (default: the shipped pipeline made for the study's modality), a "
    "shipped pipeline's name, a pipeline YAML, a MONAI bundle folder, an nnU-Net v2 "
    "results folder, or totalsegmentator:TASK (e.g. totalsegmentator:total)"
)


def add_model_options(p: argparse.ArgumentParser, *, bundle: bool = False) -> None:
    """``--model`` (``--pipeline``, and ``--bundle`` where it existed, name the same
    thing) and the per-kind options."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, help=_MODEL_HELP)
    which.add_argument(
        "--pipeline", default=None, help="shipped pipeline name or YAML file (as --model)"
    )
    if bundle:
        which.add_argument("--bundle", default=None, help="a MONAI bundle folder (as --model)")
    p.add_argument(
        "--folds",
        default=None,
        help="nnU-Net / TotalSegmentator: folds to average, e.g. 0,1,2 or all "
        "(default: every fold the folder holds)",
    )
    p.add_argument(
        "--configuration",
        default=None,
        help="nnU-Net dataset folder: the configuration to run (default: 3d_fullres)",
    )
    p.add_argument(
        "--no-tta",
        action="store_true",
        help="no test-time augmentation (flips; nnU-Net's mirroring)",
    )
    p.add_argument(
        "--trust-bundle",
        action="store_true",
        help="allow a MONAI bundle's config to run code (needed for bundles; only for "
        "bundles you trust)",
    )
    p.add_argument(
        "--labels",
        default=None,
        help="MONAI bundle whose metadata has no channel_def: a JSON/YAML file mapping "
        "label value -> name",
    )


def model_ref(args: argparse.Namespace):
    """The :class:`~medrecon.models.ref.ModelRef` the options name."""
    from medrecon.models.ref import ModelRef, parse_folds
    from medrecon.pipeline.auto import AUTO

    ref = args.model or args.pipeline or getattr(args, "bundle", None) or AUTO
    return ModelRef(
        ref=ref,
        folds=parse_folds(args.folds),
        configuration=args.configuration,
        tta=not args.no_tta,
        trust=args.trust_bundle,
        labels=args.labels,
    )
