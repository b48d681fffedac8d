"""``medrecon run --reconstruct`` and its ``--reconstruct-*`` options, and the
:class:`~medrecon.study.reconstruction.ReconstructOptions` they make.

Any ``--reconstruct-*`` option implies ``--reconstruct``. The choices mirror
``medrecon reconstruct``'s options of the same names without the prefix.
"""

from __future__ import annotations

import argparse

__all__ = ["add_reconstruct_options", "reconstruct_options"]


def add_reconstruct_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "reconstruction", "segment the reconstruction of a thick stack (docs/reconstruct.md)"
    )
    g.add_argument(
        "--reconstruct",
        action="store_true",
        help="reconstruct the chosen thick stack first and segment that: every output on its "
        "isotropic grid, the stack kept as source.nii.gz (an isotropic stack: a warning)",
    )
    g.add_argument(
        "--reconstruct-method",
        default=None,
        choices=("network", "bspline", "linear"),
        help="network (default) or the bspline / linear baselines",
    )
    g.add_argument(
        "--reconstruct-profile", default=None, choices=("box", "gaussian"), help="slice profile"
    )
    g.add_argument(
        "--reconstruct-thickness", type=float, default=None, metavar="MM", help="slice thickness"
    )
    g.add_argument(
        "--reconstruct-spacing", type=float, default=None, metavar="MM", help="output spacing"
    )
    w = g.add_mutually_exclusive_group()
    w.add_argument("--reconstruct-weights", default=None, metavar="FILE", help="network weights")
    w.add_argument(
        "--reconstruct-no-pretrained", action="store_true", help="start from an untrained network"
    )
    t = g.add_mutually_exclusive_group()
    t.add_argument(
        "--reconstruct-no-finetune", action="store_true", help="pretrained network as shipped"
    )
    t.add_argument(
        "--reconstruct-finetune-steps", type=int, default=None, metavar="N", help="default 300"
    )


def reconstruct_options(args: argparse.Namespace):
    """The checked :class:`~medrecon.study.reconstruction.ReconstructOptions`, or None
    when no reconstruction option was given."""
    from medrecon.study.reconstruction import ReconstructOptions

    given = {
        "method": args.reconstruct_method,
        "kind": args.reconstruct_profile,
        "thickness": args.reconstruct_thickness,
        "spacing": args.reconstruct_spacing,
        "finetune_steps": args.reconstruct_finetune_steps,
    }
    if args.reconstruct_weights is not None:
        given["weights"] = args.reconstruct_weights
    if args.reconstruct_no_pretrained:
        given["weights"] = None
    if args.reconstruct_no_finetune:
        given["finetune"] = False
    changes = {k: v for k, v in given.items() if v is not None or k == "weights"}
    if not (args.reconstruct or changes):
        return None
    return ReconstructOptions(**changes)
