"""Pieces of the nnU-Net engine with known answers (no nnU-Net training needed)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from nnunet_plans import ARCH, RESAMPLE

from medrecon.errors import PipelineError
from medrecon.foreign.nnunet import is_nnunet_folder, load_nnunet
from medrecon.foreign.nnunet.checkpoint import load_checkpoint
from medrecon.foreign.nnunet.network import build_network
from medrecon.foreign.nnunet.plans import read_configuration, read_label_scheme
from medrecon.foreign.nnunet.preprocess import nonzero_box, reader_view
from medrecon.foreign.nnunet.resample import axis_orders, resample_array
from medrecon.foreign.nnunet.sliding import gaussian_map, mirror_combinations, tile_starts
from medrecon.volume import Volume

torch = pytest.importorskip("torch")

PLANS = {
    "dataset_name": "Dataset777_Parts",
    "plans_name": "nnUNetPlans",
    "image_reader_writer": "SimpleITKIO",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "foreground_intensity_properties_per_channel": {
        "0": {"mean": 50.0, "std": 100.0, "percentile_00_5": -500.0, "percentile_99_5": 300.0}
    },
    "configurations": {
        "3d_fullres": {
            "patch_size": [16, 16, 16],
            "spacing": [3.0, 3.0, 3.0],
            "normalization_schemes": ["CTNormalization"],
            "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": RESAMPLE,
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**RESAMPLE, "order": 1},
            "architecture": ARCH,
        },
        "3d_lowres": {"inherits_from": "3d_fullres", "spacing": [6.0, 6.0, 6.0]},
    },
}
DATASET = {
    "channel_names": {"0": "CT"},
    "labels": {"background": 0, "liver": 1, "spleen": 2},
    "file_ending": ".nii.gz",
}


class NotAllowed:
    """A class a checkpoint must not be able to make medrecon instantiate."""

    def __init__(self):
        self.payload = "anything"


def _network(plans=PLANS):
    config = read_configuration(plans, "3d_fullres", "plans.json")
    return build_network(config.architecture, 1, 3, "plans.json")


def _write_trainer(root, config="3d_fullres", folds=(0, 1), plans=PLANS, dataset=DATASET):
    folder = root / "Dataset777_Parts" / f"nnUNetTrainer__nnUNetPlans__{config}"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    weights = _network().state_dict()
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        checkpoint = {
            "network_weights": weights,
            "trainer_name": "nnUNetTrainer",
            "init_args": {"configuration": config, "fold": fold},
            "inference_allowed_mirroring_axes": (0, 1, 2),
            "_best_ema": np.float32(0.5),
            "logging": {"train_losses": [np.float32(1.0)]},
        }
        torch.save(checkpoint, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def test_steps_and_gaussian_hand_computed():
    # nnU-Net's own example: 110 voxels, patch 64, half-patch steps -> 0, 23, 46.
    assert tile_starts((110, 64, 65), (64, 64, 64)) == [[0, 23, 46], [0], [0, 1]]
    assert tile_starts((128,), (64,)) == [[0, 32, 64]]
    g = gaussian_map((5, 5, 5))
    sigma2 = (5 / 8) ** 2
    assert g[2, 2, 2] == pytest.approx(10.0)
    assert g[0, 2, 2] == pytest.approx(10 * math.exp(-4 / (2 * sigma2)), rel=1e-5)
    assert g[1, 1, 2] == pytest.approx(10 * math.exp(-2 / (2 * sigma2)), rel=1e-5)
    assert g.min() > 0
    assert mirror_combinations((0, 1, 2)) == [
        (),
        (0,),
        (1,),
        (2,),
        (0, 1),
        (0, 2),
        (1, 2),
        (0, 1, 2),
    ]
    assert mirror_combinations(None) == [()]


def test_resampling_matches_skimage_resize():
    from skimage.transform import resize

    rng = np.random.default_rng(3)
    image = np.cumsum(rng.normal(size=(23, 19, 17)), axis=0).astype(np.float32)
    for shape in ((11, 30, 17), (40, 9, 25)):
        for order in (0, 1, 3):
            ref = resize(image.astype(float), shape, order, mode="edge", anti_aliasing=False)
            ours = resample_array(image, shape, (order,) * 3)
            assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()


def test_separate_z_decision():
    config = read_configuration(PLANS, "3d_fullres", "plans.json")
    rule = config.data_resampling
    assert axis_orders(rule, (3, 3, 3), (6, 6, 6)) == ((3, 3, 3), None)
    assert axis_orders(rule, (12, 3, 3), (6, 6, 6)) == ((0, 3, 3), 0)
    assert axis_orders(rule, (6, 6, 6), (3, 3, 12)) == ((3, 3, 0), 2)
    # Two equally coarse axes: nnU-Net resamples all axes together.
    assert axis_orders(rule, (12, 12, 3), (6, 6, 6)) == ((3, 3, 3), None)


def test_reader_view_axes_and_reorient_round_trip():
    array = np.arange(24).reshape(2, 3, 4)
    affine = np.diag([-1.0, 2.0, 3.0, 1.0])
    volume = Volume(array, affine)
    plain = reader_view(volume, "SimpleITKIO")
    assert plain.array.shape == (4, 3, 2) and plain.spacing == (3.0, 2.0, 1.0)
    assert plain.array[3, 2, 1] == array[1, 2, 3]
    turned = reader_view(volume, "NibabelIOWithReorient")
    assert turned.array[0, 0, 0] == array[-1, 0, 0]  # x axis flipped to point right
    np.testing.assert_array_equal(turned.restore(turned.array), array)
    assert nonzero_box(np.pad(np.ones((2, 2, 2)), 1)) == (slice(1, 3),) * 3


def test_checkpoint_with_foreign_object_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"network_weights": {}, "extra": NotAllowed()}, path)
    with pytest.raises(PipelineError, match="will not unpickle"):
        load_checkpoint(path)


def test_plans_network_class_outside_allowlist_refused():
    plans = copy.deepcopy(PLANS)
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"
    with pytest.raises(PipelineError, match="not allowed"):
        _network(plans)
    plans = copy.deepcopy(PLANS)
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "os.system"
    with pytest.raises(PipelineError, match="not allowed"):
        _network(plans)


def test_inheritance_and_regions():
    lowres = read_configuration(PLANS, "3d_lowres", "plans.json")
    assert lowres.spacing == (6.0, 6.0, 6.0) and lowres.patch_size == (16, 16, 16)
    regions = {
        "labels": {"background": 0, "whole": [1, 2], "core": 2},
        "regions_class_order": [1, 2],
    }
    scheme = read_label_scheme(regions, "dataset.json")
    assert scheme.regions == ((1, 2), (2,)) and scheme.num_heads == 2
    assert scheme.names == {1: "whole", 2: "core"}
    with pytest.raises(PipelineError, match="regions_class_order"):
        read_label_scheme({"labels": regions["labels"]}, "dataset.json")


def test_folder_detection_and_configuration_choice(tmp_path):
    full = _write_trainer(tmp_path)
    low = _write_trainer(tmp_path, config="3d_lowres", folds=("all",))
    dataset = full.parent
    assert is_nnunet_folder(full) and is_nnunet_folder(dataset)
    assert not is_nnunet_folder(tmp_path / "nothing") and not is_nnunet_folder(full / "fold_0")
    pipeline = load_nnunet(dataset)
    assert pipeline.engine == "nnunet" and pipeline.name == "nnunet:Dataset777_Parts/3d_fullres"
    assert pipeline.foreign.folds == ("0", "1") and pipeline.modality == "CT"
    assert [(lb.value, lb.name) for lb in pipeline.labels] == [(1, "liver"), (2, "spleen")]
    assert load_nnunet(dataset, configuration="3d_lowres").foreign.folds == ("all",)
    (full / "plans.json").unlink()  # no longer a trainer folder: only 3d_lowres is left
    assert load_nnunet(dataset).foreign.configuration.name == "3d_lowres"
    _write_trainer(tmp_path / "b", config="2d")
    _write_trainer(tmp_path / "b", config="3d_lowres")
    with pytest.raises(PipelineError, match="2d, 3d_lowres"):
        load_nnunet(tmp_path / "b" / "Dataset777_Parts")
    assert low.is_dir()


def test_missing_fold_and_multichannel_named(tmp_path):
    folder = _write_trainer(tmp_path, folds=(0,))
    with pytest.raises(PipelineError, match=r"fold_3.checkpoint_final\.pth"):
        load_nnunet(folder, folds=(0, 3))
    with pytest.raises(PipelineError, match=r"checkpoint_best\.pth"):
        load_nnunet(folder, checkpoint="checkpoint_best.pth")
    two = _write_trainer(
        tmp_path / "mc", dataset={**DATASET, "channel_names": {"0": "T1", "1": "T2"}}
    )
    with pytest.raises(PipelineError, match="0: T1, 1: T2"):
        load_nnunet(two)


def test_engine_runs_synthetic_model(tmp_path):
    from medrecon.models.engines import build_engine

    folder = _write_trainer(tmp_path)
    engine = build_engine(load_nnunet(folder, tta=False), device="cpu")
    assert engine.mirror_axes is None and len(engine.networks) == 2
    array = np.zeros((20, 18, 10), np.int16)
    array[3:17, 2:15, 1:9] = 40
    volume = Volume(array, np.diag([2.0, 2.0, 5.0, 1.0]))
    seg = engine(volume)
    assert seg.labels.shape == volume.shape and seg.labels.array.dtype == np.uint8
    assert set(np.unique(seg.labels.array)) <= {0, 1, 2}
    assert set(seg.timings) == {"preprocess", "inference", "resample"}
