"""A small cohort built from the real data in ../shared/data, for the cohort tests
and benchmarks/bench_cohort.py.

Good studies are crops of the real abdominal CT in different geometry (RAS
NIfTI, the same voxels flipped to LPS on disk, a DICOM series written with
another spacing), and a real Philips CT DICOM series. Bad studies: a folder of
garbage ``.dcm`` files and an empty folder.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["GOOD", "BAD", "build_cohort", "ct_block", "hung_study", "read_cohort_csv"]

#: Study folder names in the built cohort (sorted = the cohort's order).
GOOD = ("ct-dicom", "ct-lps", "ct-ras")
BAD = ("corrupt", "empty")


def ct_block(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 40x36x24-voxel block (120x108x72 mm) of the real CT, through the liver."""
    img = nib.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    block = (slice(30, 70), slice(30, 66), slice(50, 74))
    array = np.asarray(img.dataobj)[block].astype(np.int16)
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ [b.start for b in block] + img.affine[:3, 3]
    return array, affine


def _write_nifti(array, affine, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def build_cohort(shared_data: Path, root: Path, *, real_dicom: bool = False, copies: int = 1):
    """Write the cohort under ``root`` (one folder per study) and return ``root``.

    ``real_dicom`` adds the real Philips head CT series (28 slices of 512x512);
    ``copies`` > 1 repeats the good studies (``ct-ras-2``, ...) for benchmarks.
    """
    from medrecon.testing.dicom_series import write_ct_series

    array, affine = ct_block(shared_data)
    for n in range(1, copies + 1):
        tag = "" if n == 1 else f"-{n}"
        _write_nifti(array, affine, root / f"ct-ras{tag}" / "ct.nii.gz")
        # The same voxels stored LPS on disk: i and j reversed, the affine following.
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = [array.shape[0] - 1, array.shape[1] - 1]
        _write_nifti(array[::-1, ::-1].copy(), affine @ flip, root / f"ct-lps{tag}" / "ct.nii.gz")
        # A DICOM series with coarser slices (every other slice: 6 mm apart).
        dicom = array[:, :, ::2]
        dicom_affine = affine.copy()
        dicom_affine[:3, 2] *= 2
        write_ct_series(
            dicom,
            dicom_affine,
            root / f"ct-dicom{tag}" / "series",
            series_description="cohort test",
            seed=n,
        )
    if real_dicom:
        shutil.copytree(shared_data / "dicom" / "ct-philips-axial", root / "philips-axial")
    corrupt = root / "corrupt"
    corrupt.mkdir()
    rng = np.random.default_rng(7)
    for i in range(3):
        (corrupt / f"IM{i:04d}.dcm").write_bytes(rng.bytes(2048))
    (root / "empty").mkdir()
    return root


def read_cohort_csv(path: Path) -> dict[str, dict[str, str]]:
    """cohort.csv as {study: row}."""
    with open(path, newline="", encoding="utf-8") as f:
        return {row["study"]: row for row in csv.DictReader(f)}


def hung_study(folder: Path) -> Path:
    """A study whose reading never ends: its one "DICOM file" is a named pipe no one
    writes to, so opening it blocks, as on a stalled network file system."""
    import os

    folder.mkdir(parents=True)
    os.mkfifo(folder / "IM0001.dcm")
    return folder


def kill_worker_on_start(study: str):
    """An ``on_event`` callback that SIGKILLs the worker the first time it starts
    ``study``, and the list of pids it killed."""
    import os
    import signal

    killed: list[int] = []

    def on_event(event) -> None:
        if event.kind == "start" and not killed and event.study == study:
            pid = int(event.worker.rsplit(":", 1)[1])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    return on_event, killed
