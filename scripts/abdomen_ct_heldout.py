"""Held-out Dice of the shipped abdomen-ct model on the real CT it was trained from.

The shipped model never saw the labels of the held-out axial slabs (every third
12 mm slab, see ``scripts/abdomen-ct.dataset.yaml``). This runs the full
``Segmenter`` (preprocessing, sliding window, return to the native grid, refine
steps) on ``../shared/data/ct-abdomen/ct.nii.gz`` and prints Dice per organ on those
slabs only, as a Markdown table for docs/models.md. Usage, from the project root::

    python scripts/abdomen_ct_heldout.py [--pipeline abdomen-ct]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COHORT = ROOT / "scripts" / "abdomen-ct.dataset.yaml"

logger = logging.getLogger("abdomen_ct_heldout")


def heldout_dice(pipeline_name: str = "abdomen-ct") -> tuple[dict[str, tuple], float]:
    """``organ -> (Dice, reference voxels, predicted voxels)`` on the held-out slabs,
    and the segmentation time in seconds."""
    from medrecon.io import load
    from medrecon.pipeline.registry import load_pipeline
    from medrecon.pipeline.segment import Segmenter
    from medrecon.train.dataset import read_cohort
    from medrecon.train.prepare import prepare_cohort
    from medrecon.train.validate import dice_per_label

    pipeline = load_pipeline(pipeline_name)
    cohort = read_cohort(COHORT)
    (case,), _ = prepare_cohort(cohort, pipeline, seed=0)
    volume = load(cohort.cases[0].image)
    if not np.allclose(case.affine, volume.affine) or case.reference.shape != volume.shape:
        raise SystemExit("the model grid is not the native grid; compare on one grid first")
    t0 = time.perf_counter()
    seg = Segmenter(pipeline, device="cpu")(volume)
    seconds = time.perf_counter() - t0
    values = [lab.value for lab in pipeline.labels]
    scores = dice_per_label(seg.labels.array, case.reference, case.val_mask, values)
    return {lab.name: scores[lab.value] for lab in pipeline.labels}, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default="abdomen-ct")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    scores, seconds = heldout_dice(args.pipeline)
    lines = ["| organ | Dice (held-out slabs) | reference voxels | predicted voxels |"]
    lines.append("| --- | --- | --- | --- |")
    for name, (dice, n_ref, n_pred) in scores.items():
        lines.append(f"| {name} | {dice:.3f} | {n_ref} | {n_pred} |")
    mean = float(np.nanmean([d for d, _, _ in scores.values()]))
    lines.append(f"| **mean** | **{mean:.3f}** | | |")
    sys.stdout.write("\n".join(lines) + f"\n\nsegmentation {seconds:.1f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
