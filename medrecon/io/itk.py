"""NRRD and MetaImage files (.nrrd, .nhdr, .mha, .mhd) to and from Volume via SimpleITK.

SimpleITK is imported inside the functions: importing medrecon does not need it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from medrecon.atomic import atomic_write_path
from medrecon.errors import FormatError, InputError
from medrecon.volume import Volume, VolumeMeta

__all__ = ["ITK_SUFFIXES", "read_itk", "write_itk"]

logger = logging.getLogger(__name__)

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: Single-file formats: a detached header (.nhdr/.mhd) names its data file, which a
#: rename of the temporary file would break, so those are read-only here.
_WRITABLE_SUFFIXES = (".nrrd", ".mha")


def _check_path(path: Path, suffixes: tuple[str, ...]) -> None:
    if not path.name.lower().endswith(suffixes):
        raise FormatError(
            f"{path.name!r} is not one of {', '.join(suffixes)}; use read_nifti for NIfTI "
            "and medrecon.io.load for DICOM."
        )


def read_itk(path: str | os.PathLike[str]) -> Volume:
    """Read a .nrrd/.nhdr/.mha/.mhd file into a Volume (LPS converted to RAS)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"Image file not found: {path}. Check the path and try again.")
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the path of an NRRD or MetaImage file.")
    _check_path(path, ITK_SUFFIXES)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        # SimpleITK reports every read failure as RuntimeError with ITK's text.
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise FormatError(
            f"Cannot read {path} with SimpleITK ({first}). The file is corrupt, truncated "
            "or its data file is missing; re-export it or check the download."
        ) from exc
    name = path.name
    meta = VolumeMeta(description=name[: name.rfind(".")], source_files=[str(path)])
    try:
        vol = Volume.from_sitk(img, meta)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from exc
    logger.debug("read %s: %r", path, vol)
    return vol


def write_itk(vol: Volume, path: str | os.PathLike[str], compress: bool = True) -> Path:
    """Write ``vol`` to a .nrrd or .mha file atomically (LPS, as ITK writes)."""
    import SimpleITK as sitk

    path = Path(path)
    _check_path(path, _WRITABLE_SUFFIXES)
    img = vol.to_sitk()
    with atomic_write_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=compress)
    logger.debug("wrote %s", path)
    return path
