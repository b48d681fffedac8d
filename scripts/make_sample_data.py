"""Build the quick-start study ``sample_data/ct-abdomen/`` from the shared TotalSegmentator CT.

Reads ``ct.nii.gz`` (RAS, int32 HU) and writes it as a DICOM CT series, one file per
slice, with ``medrecon.testing.dicom_series.write_ct_series``. The UIDs are seeded, so a
rerun writes identical files. Usage, from the project root::

    python scripts/make_sample_data.py --overwrite
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from medrecon.testing.dicom_series import write_ct_series

logger = logging.getLogger("make_sample_data")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = PROJECT_ROOT.parent / "shared" / "data" / "ct-abdomen" / "ct.nii.gz"
DEFAULT_OUT = PROJECT_ROOT / "sample_data" / "ct-abdomen"

STUDY_DESCRIPTION = "CT abdomen-pelvis (TotalSegmentator sample)"
SERIES_DESCRIPTION = "CT axial 3 mm"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write the quick-start CT study as a DICOM series from ct.nii.gz."
    )
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="NIfTI CT (default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="UID seed (default: %(default)s)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output folder if it exists"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    if not args.source.is_file():
        logger.error("source CT not found: %s (pass --source)", args.source)
        return 2
    image = nib.load(args.source)
    volume = np.asarray(image.dataobj)
    affine = image.header.get_sform() if image.header["sform_code"] > 0 else image.affine
    logger.info("read %s: shape %s, dtype %s", args.source, volume.shape, volume.dtype)
    try:
        paths = write_ct_series(
            volume,
            affine,
            args.out,
            study_description=STUDY_DESCRIPTION,
            series_description=SERIES_DESCRIPTION,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except FileExistsError as error:
        logger.error("%s", error)
        return 1
    size = sum(path.stat().st_size for path in paths)
    logger.info("wrote %d files, %.2f MB, to %s", len(paths), size / 1e6, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
