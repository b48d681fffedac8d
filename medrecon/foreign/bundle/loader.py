"""Stand in for a bundle's ``LoadImaged``: medrecon's Volume as MONAI would have loaded it.

A bundle's ``preprocessing`` starts by reading a file. medrecon has already read
the image (from DICOM, NRRD, NIfTI...) into a :class:`Volume`, so that one step
is replaced: the Volume becomes the ``{"image": MetaTensor}`` item that the
bundle's own ``LoadImaged`` would have produced from the volume saved as NIfTI,
with the same options (dtype, ``ensure_channel_first``, ``image_only``, meta
keys, metadata pruning).

For the reader MONAI picks for NIfTI (``NibabelReader``, its default), this is
done in memory with that very reader object: ``NibabelReader.get_data`` on a
nibabel image of the Volume yields the same array and meta dict (``affine``,
``original_affine``, ``spatial_shape``, ``space``, ``original_channel_dim``,
the header fields) as it does on the file. For any other reader a bundle names
(``ITKReader``...), the Volume is written to a temporary NIfTI and the bundle's
own ``LoadImaged`` reads it, so the result is the reader's by construction.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from medrecon.errors import PipelineError
from medrecon.volume import Volume

__all__ = ["load_like_bundle"]

log = logging.getLogger(__name__)

#: The suffix LoadImage's reader choice is made for (the file we stand in for).
_SUFFIX = ".nii.gz"


def _filename(volume: Volume) -> str:
    """What ``filename_or_obj`` names: the source file when known (writers use it)."""
    if volume.meta.source_files:
        return str(volume.meta.source_files[0])
    return (volume.meta.description or "volume") + _SUFFIX


def _chosen_reader(loader: Any) -> Any:
    """The reader ``LoadImage.__call__`` would use for a NIfTI file.

    Readers are tried in reverse registration order: the one a bundle names
    comes last, so it is tried first; without one, the first whose suffix fits.
    """
    readers = list(loader.readers)[::-1]
    if loader.auto_select:
        readers = [r for r in readers if r.verify_suffix(f"image{_SUFFIX}")]
    if not readers:
        raise PipelineError(f"the bundle's LoadImaged has no reader for {_SUFFIX} files")
    return readers[0]


def load_like_bundle(volume: Volume, load_transform: Any, key: str) -> dict[str, Any]:
    """``load_transform({key: <volume as NIfTI>})`` without the file, when possible."""
    from monai.data import NibabelReader

    if volume.array.ndim != 3:
        raise PipelineError(
            f"{_filename(volume)}: the volume is {volume.array.ndim}D {volume.shape}; "
            "a MONAI bundle is fed one 3D image"
        )
    loader = load_transform._loader
    reader = _chosen_reader(loader)
    if isinstance(reader, NibabelReader) and not getattr(reader, "to_gpu", False):
        return _in_memory(volume, load_transform, loader, reader, key)
    log.info("bundle reads with %s: loading through a temporary NIfTI", type(reader).__name__)
    with tempfile.TemporaryDirectory(prefix="medrecon-bundle-") as tmp:
        path = Path(tmp) / f"image{_SUFFIX}"
        volume.to_nibabel().to_filename(str(path))
        data = load_transform({key: str(path)})
        for value in data.values():
            # The temporary path would otherwise be what writers and logs see.
            meta = getattr(value, "meta", value if isinstance(value, dict) else None)
            if isinstance(meta, dict) and "filename_or_obj" in meta:
                meta["filename_or_obj"] = _filename(volume)
        # Pull the voxels into memory before the file goes.
        return {k: (v.clone() if hasattr(v, "clone") else v) for k, v in data.items()}


def _in_memory(volume: Volume, load_transform: Any, loader: Any, reader: Any, key: str) -> dict:
    """LoadImaged -> LoadImage -> NibabelReader, step for step, from a nibabel image."""
    from monai.data import MetaTensor
    from monai.data.utils import correct_nifti_header_if_necessary
    from monai.transforms import EnsureChannelFirst
    from monai.transforms.io.array import switch_endianness
    from monai.utils import ImageMetaKey, convert_to_dst_type

    name = _filename(volume)
    # NibabelReader.read: nib.load then correct_nifti_header_if_necessary.
    image = correct_nifti_header_if_necessary(volume.to_nibabel())
    # get_data pairs images with the names read() stored.
    reader.filenames = (name,)
    array, meta = reader.get_data(image)
    # LoadImage.__call__ from here on, with the bundle's options.
    array = convert_to_dst_type(array, dst=array, dtype=loader.dtype)[0]
    meta = switch_endianness(meta, "<")
    meta[ImageMetaKey.FILENAME_OR_OBJ] = name
    tensor = MetaTensor.ensure_torch_and_prune_meta(
        array, meta, loader.simple_keys, pattern=loader.pattern, sep=loader.sep
    )
    if loader.ensure_channel_first:
        tensor = EnsureChannelFirst()(tensor, meta_dict=meta)
    # LoadImaged.__call__: the image, plus its meta dict under `<key>_<postfix>`.
    data: dict[str, Any] = {key: tensor}
    if not loader.image_only:
        meta_key = load_transform.meta_keys[0]
        data[meta_key or f"{key}_{load_transform.meta_key_postfix[0]}"] = (
            tensor.meta if isinstance(tensor, MetaTensor) else meta
        )
    return data
