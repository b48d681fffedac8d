"""medrecon's nnU-Net engine against nnUNetPredictor on a results folder nnU-Net built.

The folder comes from nnU-Net's own planning, preprocessing and trainer
(tests/nnunet_fixture.py, two folds). Inputs are real CT stored in another
orientation than the training data, isotropic and anisotropic.
"""

from __future__ import annotations

import numpy as np
import pytest
from nnunet_fixture import FOLDS

from medrecon.io.nifti import read_nifti

nib = pytest.importorskip("nibabel")

#: Region of the 3 mm CT used as input (upper abdomen; about two tiles on the 6 mm grid).
INPUT_BOX = (slice(10, 110), slice(15, 85), slice(56, 112))
#: Stored as (k flipped, i, j flipped): a different axis order and direction from training.
REORIENT = np.array([[1, 1], [2, -1], [0, -1]])


def _input_file(shared_data, folder, name: str, k_step: int = 1):
    ct = nib.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    box = (*INPUT_BOX[:2], slice(INPUT_BOX[2].start, INPUT_BOX[2].stop, k_step))
    array = np.asarray(ct.dataobj)[box].astype(np.int16)
    affine = ct.affine.copy()
    affine[:3, 2] *= k_step
    affine[:3, 3] = ct.affine[:3, :3] @ [b.start for b in box] + ct.affine[:3, 3]
    image = nib.Nifti1Image(array, affine).as_reoriented(REORIENT)
    path = folder / f"{name}_0000.nii.gz"
    nib.save(image, path)
    return path


def _nnunet_reference(results, path, out_dir):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=True,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(str(results), use_folds=FOLDS)
    predictor.predict_from_files_sequential(
        [[str(path)]], [str(out_dir / "reference")], save_probabilities=False, overwrite=True
    )
    return np.asarray(nib.load(out_dir / "reference.nii.gz").dataobj)


def _compare(nnunet_folder, path, tmp_path):
    from medrecon.foreign.nnunet import load_nnunet
    from medrecon.models.engines import build_engine

    reference = _nnunet_reference(nnunet_folder, path, tmp_path)
    pipeline = load_nnunet(nnunet_folder.parent)
    assert pipeline.foreign.folds == tuple(str(f) for f in FOLDS)
    engine = build_engine(pipeline, device="cpu")
    volume = read_nifti(path)
    seg = engine(volume)
    labels = seg.labels.array
    assert labels.shape == reference.shape == volume.shape
    np.testing.assert_allclose(seg.labels.affine, volume.affine)
    assert labels.dtype == np.uint8
    fractions = np.bincount(reference.ravel(), minlength=6) / reference.size
    agreement = float((labels == reference).mean())
    report = f"agreement {100 * agreement:.3f} %, reference fractions {np.round(fractions, 4)}"
    print(f"{report}; medrecon timings {seg.timings}")  # noqa: T201 - the figure asked for
    # A non-trivial reference: several foreground labels each on >= 1 % of voxels.
    assert (fractions[1:] >= 0.01).sum() >= 3
    assert agreement >= 0.995
    return agreement


def test_parity_with_nnunet_predictor_reoriented(nnunet_folder, shared_data, tmp_path):
    path = _input_file(shared_data, tmp_path, "iso")
    assert nib.aff2axcodes(nib.load(path).affine) != ("R", "A", "S")
    _compare(nnunet_folder, path, tmp_path)


def test_parity_with_nnunet_predictor_anisotropic(nnunet_folder, shared_data, tmp_path):
    # 3 x 3 x 12 mm: nnU-Net resamples the coarse axis apart (nearest) in and out.
    path = _input_file(shared_data, tmp_path, "aniso", k_step=4)
    zooms = nib.load(path).header.get_zooms()
    assert max(zooms) / min(zooms) > 3
    _compare(nnunet_folder, path, tmp_path)


def test_checkpoint_accepted_and_mirror_axes(nnunet_folder):
    from medrecon.foreign.nnunet.checkpoint import load_checkpoint

    ck = load_checkpoint(nnunet_folder / "fold_0" / "checkpoint_final.pth")
    assert ck.trainer_name == "nnUNetTrainer"
    assert ck.configuration == "3d_fullres"
    assert ck.mirror_axes == (0, 1, 2)
    assert any(k.startswith("decoder.seg_layers") for k in ck.weights)
