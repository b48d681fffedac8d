"""Small real training cohorts for the training tests: crops of the shared real CT."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import yaml

__all__ = ["REMAP", "TINY_UNET", "crop_case", "tiny_pipeline", "write_cohort"]

ROOT = Path(__file__).resolve().parents[1]

#: pipeline label -> TotalSegmentator v1 class, as in scripts/abdomen-ct.dataset.yaml.
REMAP = {
    name: name
    for name in (
        "spleen",
        "kidney_right",
        "kidney_left",
        "gallbladder",
        "liver",
        "stomach",
        "aorta",
        "inferior_vena_cava",
        "pancreas",
        "urinary_bladder",
    )
}

TINY_UNET = {
    "in_channels": 1,
    "out_channels": 11,
    "channels": [8, 16, 32],
    "strides": [2, 2],
    "num_res_units": 1,
    "norm": "instance",
}


def crop_case(shared: Path, folder: Path, box, name: str = "ct") -> tuple[Path, Path]:
    """The real CT and its labels cropped to ``box`` (voxel slices), affine shifted to match."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src, kind in (("ct.nii.gz", "image"), ("labels.nii.gz", "label")):
        img = nib.load(shared / "ct-abdomen" / src)
        array = np.asarray(img.dataobj)[box]
        affine = img.affine.copy()
        affine[:3, 3] = (img.affine @ np.array([s.start or 0 for s in box] + [1]))[:3]
        path = folder / f"{name}_{kind}.nii.gz"
        nib.save(nib.Nifti1Image(array, affine), path)
        out.append(path)
    return out[0], out[1]


def write_cohort(shared: Path, folder: Path, cases, **extra: Any) -> Path:
    """A JSON cohort of ``cases`` [(id, image, label)] with the TotalSegmentator table."""
    data = {
        "cases": [{"id": i, "image": str(im), "label": str(lb)} for i, im, lb in cases],
        "source_labels": str(shared / "ct-abdomen" / "labels.json"),
        "remap": REMAP,
        "unmapped": "background",
        **extra,
    }
    path = folder / "cohort.json"
    path.write_text(json.dumps(data))
    return path


def tiny_pipeline(folder: Path, roi: int = 48) -> Path:
    """The shipped abdomen-ct pipeline with a tiny UNet (trains in seconds)."""
    data = yaml.safe_load((ROOT / "pipelines" / "abdomen-ct.yaml").read_text())
    data["network"] = {"name": "UNet", "args": copy.deepcopy(TINY_UNET)}
    data["weights"] = {"path": "model.pt"}
    data["inference"].update(roi_size=[roi] * 3, overlap=0.25)
    path = folder / "tiny-abdomen.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
