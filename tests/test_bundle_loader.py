"""The stand-in for a bundle's LoadImaged gives what LoadImaged gives from the file.

For each set of LoadImaged options, the bundle's own LoadImaged reads a NIfTI
and medrecon's stand-in converts the Volume read from that same file: the
arrays, affines and the meta keys transforms rely on must be the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import phantom

from medrecon.foreign.bundle.configured import importable
from medrecon.foreign.bundle.loader import load_like_bundle
from medrecon.io.nifti import read_nifti, write_nifti

#: Meta entries that downstream transforms (Orientation, Spacing, Invertd, writers) read.
KEYS = ("affine", "original_affine", "spatial_shape", "space", "filename_or_obj", "pixdim")

READER = """from monai.data import ImageReader, NibabelReader


class FileOnlyReader(ImageReader):
    '''A reader medrecon cannot feed from memory: it goes through a temporary file.'''

    def __init__(self):
        super().__init__()
        self.inner = NibabelReader()

    def verify_suffix(self, filename):
        return True

    def read(self, data, **kwargs):
        return self.inner.read(data, **kwargs)

    def get_data(self, img):
        return self.inner.get_data(img)
"""


def _same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype
        torch.testing.assert_close(a.as_subclass(torch.Tensor), b.as_subclass(torch.Tensor))
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"image_only": False},
        {"ensure_channel_first": True},
        {"reader": "NibabelReader", "as_closest_canonical": True},
        {"dtype": "$numpy.float64"},
        {"simple_keys": True},
        {"image_only": False, "meta_keys": "img_meta"},
        {"reader": {"_target_": "scripts.readers.FileOnlyReader"}},
    ],
    ids=["default", "meta-dict", "channel-first", "canonical", "float64", "simple", "meta-key",
         "file-reader"],
)  # fmt: skip
def test_stand_in_equals_loadimaged_on_the_file(tmp_path: Path, options: dict) -> None:
    from monai.bundle import ConfigParser

    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "__init__.py").write_text("")
    (tmp_path / "scripts" / "readers.py").write_text(READER)
    volume, _ = phantom()  # LPS-like axes, int16
    path = write_nifti(volume, tmp_path / "ct.nii.gz")
    config = {
        "imports": ["$import numpy"],
        "load": {"_target_": "LoadImaged", "keys": "image", **options},
    }
    with importable(tmp_path):
        load = ConfigParser(config).get_parsed_content("load")
        expected = load({"image": str(path)})
        ours = load_like_bundle(read_nifti(path), load, "image")
    assert sorted(ours) == sorted(expected)
    for key, value in expected.items():
        got = ours[key]
        if isinstance(value, torch.Tensor):
            _same(value, got)
            _same(value.affine, got.affine)
            meta, got_meta = value.meta, got.meta
        else:
            meta, got_meta = value, got
        assert set(got_meta) == set(meta)
        for name in KEYS:
            if name in meta:
                _same(meta[name], got_meta[name])
