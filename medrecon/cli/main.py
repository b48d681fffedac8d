"""``medrecon`` command: dispatches to one module per sub-command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from medrecon.errors import MedreconError

__all__ = ["main"]

_COMMANDS = {
    "info": "medrecon.cli.info",
    "convert": "medrecon.cli.convert",
    "pipelines": "medrecon.cli.pipelines",
    "segment": "medrecon.cli.segment",
    "train": "medrecon.cli.train",
    "run": "medrecon.cli.run",
    "evaluate": "medrecon.cli.evaluate",
    "batch": "medrecon.cli.batch",
}


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(message)s")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    from medrecon import __version__

    parser = argparse.ArgumentParser(
        prog="medrecon",
        description="Exact volumes from DICOM/NIfTI slice stacks, for research imaging.",
    )
    parser.add_argument("--version", action="version", version=f"medrecon {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS.values():
        import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.run(args) or 0)
    except MedreconError as exc:
        print(f"medrecon {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
