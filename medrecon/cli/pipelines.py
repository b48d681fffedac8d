"""``medrecon pipelines``: the pipelines shipped with medrecon and whether each can run."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["add_parser", "main", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("pipelines", help="list the shipped segmentation pipelines")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from medrecon.pipeline.registry import list_pipelines

    infos = list_pipelines()
    if args.json:
        rows = []
        for info in infos:
            p = info.pipeline
            rows.append(
                {
                    "name": info.name,
                    "path": str(info.path),
                    "status": info.status,
                    "modality": p.modality if p else None,
                    "spacing_mm": list(p.preprocess.spacing or []) if p else None,
                    "labels": {lab.value: lab.name for lab in p.labels} if p else None,
                    "expected_ml": {
                        lab.name: lab.expected_ml for lab in p.labels if lab.expected_ml
                    }
                    if p
                    else None,
                    "body_parts": list(p.body_parts) if p else None,
                }
            )
        print(json.dumps(rows, indent=2))
        return 0
    if not infos:
        print("no pipelines are installed; use --pipeline path/to/file.yaml")
        return 0
    for info in infos:
        p = info.pipeline
        print(f"{info.name}: {info.status}")
        if p is not None:
            spacing = (
                "native"
                if p.preprocess.spacing is None
                else "x".join(f"{s:g}" for s in p.preprocess.spacing)
            )
            print(f"  {p.description}" if p.description else "", end="\n" if p.description else "")
            print(f"  modality {p.modality}, spacing {spacing} mm, network {p.network.name}")
            print(f"  labels: {', '.join(lab.name for lab in p.labels)}")
            if p.body_parts:
                print(f"  body parts (BodyPartExamined): {', '.join(p.body_parts)}")
        print(f"  file: {info.path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from medrecon.cli.main import main as medrecon_main

    return medrecon_main(["pipelines", *(argv if argv is not None else sys.argv[1:])])
