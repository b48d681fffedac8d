"""A real nnU-Net v2 results folder, built with nnU-Net's own tools from the shared CT.

The dataset is a handful of crops of ``ct-abdomen`` at 6 mm with five organs.
nnU-Net extracts the fingerprint, plans, preprocesses and trains two folds for
a few iterations with its own trainer (in a subprocess, because nnunetv2 reads
its folder variables at import). A network trained that briefly predicts
background everywhere, so each fold's weights are then re-initialised with
nnU-Net's network factory and a fixed seed, and the final layer's biases are
calibrated so that every class wins somewhere: the reference prediction is
then non-trivial. The checkpoint files keep the format nnU-Net wrote.

Run as a script: ``python tests/nnunet_fixture.py <root> <ct-abdomen folder>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

__all__ = ["DATASET", "LABELS", "build_results_folder", "nnunet_env"]

DATASET = "Dataset901_MedreconTiny"
#: nnU-Net label name -> value (names as TotalSegmentator spells them in labels.json).
LABELS = {
    "background": 0,
    "liver": 1,
    "spleen": 2,
    "kidney_left": 3,
    "kidney_right": 4,
    "stomach": 5,
}
FOLDS = (0, 1)
#: Crop starts (i, j, k) on the 6 mm grid (61 x 51 x 56); organs sit at k >= 30.
CROP = (40, 36, 28)
STARTS = ((0, 0, 28), (21, 0, 28), (0, 15, 28), (21, 15, 28), (10, 8, 24), (5, 5, 20))


def nnunet_env(root: Path) -> dict[str, str]:
    """Environment for nnU-Net's tools with its three folders under ``root``."""
    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(root / "raw"),
        nnUNet_preprocessed=str(root / "preprocessed"),
        nnUNet_results=str(root / "results"),
        nnUNet_n_proc_DA="1",
        nnUNet_compile="false",
        OMP_NUM_THREADS="2",
        MKL_NUM_THREADS="2",
    )
    return env


def _write_raw_dataset(raw: Path, ct_dir: Path) -> None:
    import nibabel as nib

    ct = nib.load(ct_dir / "ct.nii.gz")
    image = np.asarray(ct.dataobj)[::2, ::2, ::2]
    source = np.asarray(nib.load(ct_dir / "labels.nii.gz").dataobj)[::2, ::2, ::2]
    names = json.loads((ct_dir / "labels.json").read_text())
    by_name = {name: int(value) for value, name in names.items()}
    labels = np.zeros(source.shape, np.uint8)
    for name, value in LABELS.items():
        if value:
            labels[source == by_name[name]] = value
    affine = ct.affine.copy()
    affine[:3, :3] *= 2
    folder = raw / DATASET
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for n, start in enumerate(STARTS):
        box = tuple(slice(s, s + c) for s, c in zip(start, CROP))
        crop_affine = affine.copy()
        crop_affine[:3, 3] = affine[:3, :3] @ np.asarray(start) + affine[:3, 3]
        case = f"tiny_{n:03d}"
        nib.save(
            nib.Nifti1Image(image[box].astype(np.int16), crop_affine),
            folder / "imagesTr" / f"{case}_0000.nii.gz",
        )
        nib.save(nib.Nifti1Image(labels[box], crop_affine), folder / "labelsTr" / f"{case}.nii.gz")
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": len(STARTS),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))


def build_results_folder(root: Path, ct_dir: Path, timeout: float = 600) -> Path:
    """Build the dataset under ``root`` and return its trainer results folder."""
    root.mkdir(parents=True, exist_ok=True)
    _write_raw_dataset(root / "raw", ct_dir)
    done = subprocess.run(
        [sys.executable, __file__, str(root)],
        env=nnunet_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"nnU-Net fixture build failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
    return root / "results" / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"


# -- what runs in the subprocess (nnunetv2 imported with the folders set) ---------------


def _calibrate(network, data, seed: int) -> None:
    """Re-initialise ``network`` from ``seed`` and shift its final biases until each
    class wins on a fair share of the centre patch."""
    import torch

    torch.manual_seed(seed)
    network.apply(network.initialize)
    # nnU-Net's initialiser touches convolutions only; the norms' affine parameters
    # moved during the two training steps, so reset them for a repeatable reference.
    for module in network.modules():
        if isinstance(module, torch.nn.modules.instancenorm._InstanceNorm) and module.affine:
            module.reset_parameters()
    head = network.decoder.seg_layers[-1]
    with torch.no_grad():
        logits = network(data[None])[0]
        logits = logits - head.bias[:, None, None, None]
        n = logits.shape[0]
        bias = torch.zeros(n)
        for _ in range(60):
            share = torch.bincount(
                (logits + bias[:, None, None, None]).argmax(0).flatten(), minlength=n
            )
            share = share.float() / share.sum()
            bias += 0.5 * (np.log(1.0 / n) - torch.log(share + 1e-3))
        head.bias.copy_(bias)


def _subprocess_main(root: Path) -> None:
    import torch

    torch.set_num_threads(2)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer as Base

    dataset_id = int(DATASET[7:10])
    extract_fingerprints([dataset_id], num_processes=1, clean=True, verbose=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=("3d_fullres",), num_processes=(1,), verbose=False)

    CPU = torch.device("cpu")

    # Same class name as nnU-Net's default trainer, so the results folder and the
    # checkpoints' trainer_name are exactly what a real run writes.
    class nnUNetTrainer(Base):
        def __init__(self, plans, configuration, fold, dataset_json, device=CPU):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = 1
            self.num_iterations_per_epoch = 2
            self.num_val_iterations_per_epoch = 1
            self.batch_size = 1

    # No augmentation worker processes while training (planning needs >= 1 here).
    os.environ["nnUNet_n_proc_DA"] = "0"  # noqa: SIM112 - nnU-Net's spelling
    pre = root / "preprocessed" / DATASET
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((pre / "dataset.json").read_text())
    for fold in FOLDS:
        plans["continue_training"] = False  # what nnUNetv2_train sets; the trainer pops it
        trainer = nnUNetTrainer(plans, "3d_fullres", fold, dataset_json, device=torch.device("cpu"))
        trainer.run_training()
        network = trainer.network
        patch = trainer.configuration_manager.patch_size
        # The network's input: a preprocessed training case, padded to the patch.
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        folder = pre / "nnUNetPlans_3d_fullres"
        dataset = infer_dataset_class(str(folder))(str(folder))
        case = dataset.load_case(sorted(dataset.identifiers)[0])[0]
        image = torch.from_numpy(np.asarray(case[:1], dtype=np.float32))
        pad = [max(p - s, 0) for p, s in zip(patch, image.shape[1:])]
        image = torch.nn.functional.pad(image, [x for p in reversed(pad) for x in (0, p)])
        image = image[:, : patch[0], : patch[1], : patch[2]]
        network.eval()
        _calibrate(network, image, seed=1234 + fold)
        out = trainer.output_folder
        path = Path(out) / "checkpoint_final.pth"
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        checkpoint["network_weights"] = network.state_dict()
        torch.save(checkpoint, path)


if __name__ == "__main__":
    _subprocess_main(Path(sys.argv[1]))
