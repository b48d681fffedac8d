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
    "reconstruct": "medrecon.cli.reconstruct",
    "evaluate": "medrecon.cli.evaluate",
    "batch": "medrecon.cli.batch",
}


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(message)s")


def _named_command(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names (its first non-option word), if it is one of ours."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that sub-command (``""``: none), so starting
    one command imports nothing the others need (``medrecon --help`` lists them all)."""
    from importlib import import_module

    from medrecon._version import __version__

    parser = argparse.ArgumentParser(
        prog="medrecon",
        description="Exact volumes from DICOM/NIfTI slice stacks, for research imaging.",
    )
    parser.add_argument("--version", action="version", version=f"medrecon {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _COMMANDS.items():
        if only is None or name == only:
            import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    only = _named_command(argv)
    if only is None and "--version" in argv:
        only = ""  # --version exits while parsing: no sub-command parsers needed
    parser = build_parser(only)
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
