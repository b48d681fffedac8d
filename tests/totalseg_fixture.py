"""A TotalSegmentator-shaped weights folder holding small, real nnU-Net v2 models.

Each model folder is what nnU-Net writes after training (dataset.json, plans.json,
fold_0/checkpoint_final.pth), with a tiny PlainConvUNet built by nnU-Net's own
``get_network_from_plans`` and seeded random weights, laid out under the
dataset and trainer folder names TotalSegmentator uses. nnU-Net's predictor
loads them as it loads TotalSegmentator's downloads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from nnunet_plans import ARCH, RESAMPLE

from medrecon.foreign.totalseg.home import CHECKPOINT
from medrecon.foreign.totalseg.tasks import PartSpec, task_spec

# The checkpoint's trainer class: build_network_architecture is nnU-Net's default
# for every TotalSegmentator trainer (they change training only), and this one
# ships with nnU-Net, so nothing of TotalSegmentator is needed to load it.
CHECKPOINT_TRAINER = "nnUNetTrainer"


def _plans(dataset_name: str, spacing: float, patch: int) -> dict:
    arch, resampling = ARCH, RESAMPLE
    return {
        "dataset_name": dataset_name,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [spacing] * 3,
        "original_median_shape_after_transp": [64, 64, 64],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": [patch] * 3,
                "median_image_size_in_voxels": [64, 64, 64],
                "spacing": [spacing] * 3,
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": resampling,
                "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
                "architecture": arch,
                "batch_dice": True,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 1500.0,
                "mean": 80.0,
                "median": 60.0,
                "min": -1000.0,
                "percentile_00_5": -950.0,
                "percentile_99_5": 1200.0,
                "std": 300.0,
            }
        },
    }


def _favour_background(net, seed: int, foreground: float) -> None:
    """Raise the background logit so about ``foreground`` of a CT-like input gets a
    class: parts then claim some voxels each, as real parts do, so a merge keeps
    something of every part instead of the last part covering everything."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn((1, 1, 16, 16, 16), generator=generator) * 1.3
    net.eval()
    logits = net(sample)[0]
    margin = logits[1:].max(dim=0).values - logits[0]
    bias = net.decoder.seg_layers[-1].bias
    bias[0] += torch.quantile(margin.flatten(), 1.0 - foreground)


def write_model(
    folder: Path,
    dataset_name: str,
    classes: Mapping[int, str],
    *,
    spacing: float,
    seed: int,
    patch: int = 16,
    modality: str = "CT",
    foreground: float = 0.3,
) -> Path:
    """One trained-model folder (``<Trainer>__<Plans>__<config>``) at ``folder``."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    folder.mkdir(parents=True, exist_ok=True)
    plans = _plans(dataset_name, spacing, patch)
    labels = {"background": 0, **{name: int(value) for value, name in sorted(classes.items())}}
    dataset = {
        "channel_names": {"0": modality},
        "labels": labels,
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    torch.manual_seed(seed)
    net = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        1,
        len(labels),
        allow_init=True,
        deep_supervision=False,
    )
    with torch.no_grad():
        for param in net.parameters():  # spread the random logits: every class wins somewhere
            param.mul_(3.0)
        _favour_background(net, seed, foreground)
    fold = folder / "fold_0"
    fold.mkdir(exist_ok=True)
    torch.save(
        {
            "network_weights": net.state_dict(),
            "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0},
            "trainer_name": CHECKPOINT_TRAINER,
            "inference_allowed_mirroring_axes": (0, 1, 2),
        },
        fold / CHECKPOINT,
    )
    return folder


def write_totalseg_home(home: Path, task: str = "total", mode: str = "default") -> list[PartSpec]:
    """A TotalSegmentator home (``home/nnunet/results/...``) with every part of ``task``."""
    spec = task_spec(task, mode)
    results = home / "nnunet" / "results"
    for index, part in enumerate(spec.parts):
        write_model(
            results / part.folder / part.trainer_folder,
            part.folder,
            part.classes,
            spacing=spec.spacing[0],
            seed=index + 1,
            modality=spec.modality,
        )
    return list(spec.parts)
