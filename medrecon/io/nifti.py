"""NIfTI files (.nii, .nii.gz) to and from Volume, through nibabel."""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import nibabel as nib
from nibabel.filebasedimages import ImageFileError

from medrecon.atomic import atomic_write_path
from medrecon.errors import FormatError, InputError
from medrecon.volume import Volume, VolumeMeta

__all__ = ["read_nifti", "write_nifti"]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _stem(path: Path) -> str:
    """File name without its image suffixes: ``ct.nii.gz`` -> ``ct``."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".img.gz", ".hdr.gz", ".img", ".hdr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_readable(path: Path, kind: str) -> None:
    if not path.exists():
        raise InputError(f"{kind} file not found: {path}. Check the path and try again.")
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the path of a {kind} file.")


def read_nifti(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI file into a Volume (nibabel's best affine, stored dtype kept)."""
    path = Path(path)
    _check_readable(path, "NIfTI")
    try:
        img = nib.load(path)
        # nibabel loads lazily: read the voxels here so corrupt data fails here.
        vol = Volume.from_nibabel(
            img, VolumeMeta(description=_stem(path), source_files=[str(path)])
        )
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from exc
    except PermissionError:
        raise
    except (ImageFileError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise FormatError(
            f"Cannot read {path} as NIfTI ({type(exc).__name__}: {exc}). The file is "
            "corrupt, truncated or not NIfTI; re-export it or check the download."
        ) from exc
    logger.debug("read %s: %r", path, vol)
    return vol


def write_nifti(vol: Volume, path: str | os.PathLike[str]) -> Path:
    """Write ``vol`` to ``path`` (.nii or .nii.gz) atomically, sform = qform, code 1."""
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise InputError(f"NIfTI output must end in .nii or .nii.gz, got {path.name!r}.")
    img = vol.to_nibabel()
    with atomic_write_path(path) as tmp:
        nib.save(img, tmp)
    logger.debug("wrote %s", path)
    return path
