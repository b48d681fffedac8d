"""``medrecon train`` on crops of the real abdominal CT: loss, reproducibility, resume,
label remapping, hold-out, and clear errors on bad cohorts."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from train_helpers import ROOT, crop_case, tiny_pipeline, write_cohort

from medrecon.errors import InputError

#: Upper abdomen: liver, spleen, kidneys, stomach, pancreas, gallbladder, vessels.
UPPER = (slice(0, 122), slice(0, 101), slice(64, 112))


def _config(**kw):
    from medrecon.train.loop import TrainConfig

    base = {
        "epochs": 4,
        "iterations_per_epoch": 4,
        "batch_size": 2,
        "patch_size": (32, 32, 32),
        "lr": 3e-3,
        "warmup_epochs": 0.5,
        "val_every": 0,
        "threads": 1,
    }
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def upper_cohort(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("upper")
    image, label = crop_case(shared_data, folder, UPPER)
    cohort = write_cohort(shared_data, folder, [("upper", image, label)])
    return cohort, tiny_pipeline(folder)


def _weights(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def test_loss_falls_same_seed_same_run_and_resume_matches(upper_cohort, tmp_path):
    from medrecon.train.loop import train

    cohort, pipeline = upper_cohort
    full = train(cohort, pipeline, tmp_path / "full", _config())
    losses = [row["train_loss"] for row in full.history]
    assert losses[-1] < 0.85 * losses[0], losses
    # Same seed, interrupted after two epochs and resumed: the same patches, the same
    # losses and, at the end, the same weights and optimiser state.
    part = train(cohort, pipeline, tmp_path / "part", _config(), stop_after=2)
    assert [r["train_loss"] for r in part.history] == losses[:2]
    resumed = train(cohort, pipeline, tmp_path / "part", _config(), resume=True)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(losses, rel=1e-6)
    a = _weights(tmp_path / "full" / "checkpoint_last.pt")
    b = _weights(tmp_path / "part" / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 16
    for key, value in a["model"].items():
        assert np.allclose(value.numpy(), b["model"][key].numpy(), atol=1e-6), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    # The model folder is a usable pipeline: weights pinned by SHA-256.
    from medrecon.pipeline.registry import load_pipeline

    shipped = load_pipeline(tmp_path / "full" / "pipeline.yaml")
    assert shipped.weights.sha256 and shipped.weights.path.name == "model.pt"


def test_cpu_bf16_autocast_trains_and_keeps_float32_weights(upper_cohort, tmp_path):
    # --amp on the CPU: bfloat16 autocast (1.6x the steps per second on an AMX CPU);
    # the weights and the optimiser stay float32.
    import torch

    from medrecon.pipeline.device import bf16_supported
    from medrecon.train.loop import train

    if not bf16_supported("cpu"):
        pytest.skip("this CPU has no native bfloat16")
    cohort, pipeline = upper_cohort
    run = train(cohort, pipeline, tmp_path, _config(amp=True))
    losses = [row["train_loss"] for row in run.history]
    assert losses[-1] < 0.85 * losses[0], losses
    state = _weights(tmp_path / "checkpoint_last.pt")
    assert state["config"]["amp"] is True
    assert {v.dtype for v in state["model"].values() if v.is_floating_point()} == {torch.float32}


def test_resume_refuses_an_existing_run_without_the_flag(upper_cohort, tmp_path):
    from medrecon.train.loop import train

    cohort, pipeline = upper_cohort
    train(cohort, pipeline, tmp_path, _config(epochs=1, iterations_per_epoch=1))
    with pytest.raises(InputError, match="--resume"):
        train(cohort, pipeline, tmp_path, _config(epochs=1, iterations_per_epoch=1))


def test_resume_with_other_epochs_warns_of_the_new_schedule(upper_cohort, tmp_path, caplog):
    # The checkpoint holds the step; the curve comes from the settings of the resume.
    from medrecon.train.loop import train

    cohort, pipeline = upper_cohort
    small = {"iterations_per_epoch": 2, "warmup_epochs": 0.5}
    train(cohort, pipeline, tmp_path, _config(epochs=3, **small), stop_after=1)
    with caplog.at_level("WARNING", logger="medrecon.train.loop"):
        train(cohort, pipeline, tmp_path, _config(epochs=3, **small), resume=True, stop_after=1)
    assert "schedule" not in caplog.text
    with caplog.at_level("WARNING", logger="medrecon.train.loop"):
        train(cohort, pipeline, tmp_path, _config(epochs=6, **small), resume=True, stop_after=1)
    assert "epochs 3 -> 6" in caplog.text and "learning rate at step 4" in caplog.text


def test_remap_and_slab_hold_out_on_the_real_ct(shared_data):
    """The shipped cohort file: every organ is in both the training voxels and the
    held-out slabs, and held-out labels never reach the loss."""
    from medrecon.pipeline.registry import load_pipeline
    from medrecon.train.dataset import read_cohort
    from medrecon.train.prepare import IGNORE, prepare_cohort

    cohort = read_cohort(ROOT / "scripts" / "abdomen-ct.dataset.yaml")
    pipeline = load_pipeline("abdomen-ct", check_weights=False)
    train_cases, val_cases = prepare_cohort(cohort, pipeline, seed=0)
    (case,) = train_cases
    assert val_cases == [case]
    source = np.asarray(nib.load(shared_data / "ct-abdomen" / "labels.nii.gz").dataobj)
    names = json.loads((shared_data / "ct-abdomen" / "labels.json").read_text())
    for lab in pipeline.labels:
        value = next(int(v) for v, n in names.items() if n == lab.name)
        ref = case.reference == lab.value
        assert np.array_equal(ref, source == value), lab.name  # same grid: exact remap
        assert (case.label == lab.value).any(), f"{lab.name} absent from training voxels"
        assert (ref & case.val_mask).any(), f"{lab.name} absent from held-out slabs"
    assert np.all(case.label[0][case.val_mask] == IGNORE)
    assert not np.any(case.label[0][~case.val_mask] == IGNORE)
    # 12 mm slabs (4 slices), one in three: slices 4-7, 16-19, ... of the 112.
    held = np.flatnonzero(case.val_mask.any(axis=(0, 1)))
    assert held.tolist() == [z for z in range(112) if (z // 4) % 3 == 1]


def test_nnunet_folder_and_csv_lists(shared_data, tmp_path):
    from medrecon.pipeline.registry import load_pipeline
    from medrecon.train.dataset import label_lookup, read_cohort

    image, label = crop_case(shared_data, tmp_path / "src", UPPER)
    nn = tmp_path / "Dataset001"
    (nn / "imagesTr").mkdir(parents=True)
    (nn / "labelsTr").mkdir()
    (nn / "imagesTr" / "a_0000.nii.gz").write_bytes(image.read_bytes())
    (nn / "labelsTr" / "a.nii.gz").write_bytes(label.read_bytes())
    ts = json.loads((shared_data / "ct-abdomen" / "labels.json").read_text())
    labels = {"background": 0, **{name: int(v) for v, name in ts.items()}}  # nnU-Net v2
    (nn / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "labels": labels, "unmapped": "background"})
    )
    pipeline = load_pipeline("abdomen-ct", check_weights=False)
    cohort = read_cohort(nn)
    assert [c.id for c in cohort.cases] == ["a"]
    lookup = label_lookup(cohort, pipeline)  # same names map without a remap table
    assert lookup[104] == pipeline.label_by_name("urinary_bladder").value
    assert lookup[10] == pipeline.label_by_name("pancreas").value
    assert lookup[55] == 0  # small_bowel is not in the pipeline
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(f"id,image,label\nx,{image},{label}\n")
    assert read_cohort(csv_path).cases[0].label == label


def _prepare(cohort_path, tmp_path):
    from medrecon.pipeline.registry import load_pipeline
    from medrecon.train.dataset import read_cohort
    from medrecon.train.prepare import prepare_cohort

    pipeline = load_pipeline(tiny_pipeline(tmp_path), check_weights=False)
    return prepare_cohort(read_cohort(cohort_path), pipeline, seed=0)


def test_bad_cohorts_fail_before_training_naming_the_case(shared_data, tmp_path):
    image, label = crop_case(shared_data, tmp_path, UPPER)
    # A label map on another grid (shifted by one voxel).
    img = nib.load(label)
    shifted = img.affine.copy()
    shifted[2, 3] += 3.0
    moved = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), moved)
    path = write_cohort(shared_data, tmp_path, [("shifted-case", image, moved)])
    with pytest.raises(InputError, match=r"case shifted-case: .*different geometry"):
        _prepare(path, tmp_path)
    # Raw TotalSegmentator values without a table: 11 and up are outside the pipeline's 1..10.
    csv_path = tmp_path / "raw.csv"
    csv_path.write_text(f"id,image,label\nraw-case,{image},{label}\n")
    with pytest.raises(InputError, match=r"case raw-case: .*holds values \[11, 12, 13"):
        _prepare(csv_path, tmp_path)
    # A source label with no pipeline label, and no 'unmapped: background'.
    strict = write_cohort(shared_data, tmp_path, [("c", image, label)], unmapped="error")
    with pytest.raises(InputError, match=r"small_bowel.*'unmapped: background'"):
        _prepare(strict, tmp_path)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"cases": []}))
    with pytest.raises(InputError, match="lists no cases"):
        _prepare(empty, tmp_path)
    missing = write_cohort(shared_data, tmp_path, [("gone", tmp_path / "no.nii.gz", label)])
    with pytest.raises(InputError, match=r"case gone: file .*no.nii.gz does not exist"):
        _prepare(missing, tmp_path)


def test_left_right_flip_swaps_kidneys():
    import torch

    from medrecon.pipeline.registry import load_pipeline
    from medrecon.train.augment import left_right_pairs, rand_flip_swap

    pipeline = load_pipeline("abdomen-ct", check_weights=False)
    pairs = left_right_pairs(pipeline)
    right, left = (pipeline.label_by_name(n).value for n in ("kidney_right", "kidney_left"))
    assert pairs == [(left, right)]
    label = torch.zeros(1, 6, 2, 2, dtype=torch.uint8)
    label[0, 0], label[0, 5], label[0, 2] = right, left, 5  # right kidney at x=0, liver
    image = torch.arange(24, dtype=torch.float32).reshape(1, 6, 2, 2)
    flip = rand_flip_swap((0,), 1.0, pairs, left_right_axis=0)
    out = flip({"image": image, "label": label})
    assert torch.equal(out["image"], torch.flip(image, [1]))
    assert (out["label"][0, 0] == right).all() and (out["label"][0, 5] == left).all()
    assert (out["label"][0, 3] == 5).all()  # liver moves, keeps its value
    along_y = rand_flip_swap((1,), 1.0, pairs, left_right_axis=0)({"image": image, "label": label})
    assert (along_y["label"][0, 0] == right).all()  # no swap off the left-right axis


def test_masked_loss_ignores_held_out_voxels():
    import torch

    from medrecon.train.losses import masked_dice_ce
    from medrecon.train.prepare import IGNORE

    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4, 4)
    label = torch.randint(0, 3, (1, 1, 4, 4, 4))
    hidden = label.clone()
    hidden[..., :2] = IGNORE
    # The ignored half counts for nothing: the loss is the loss of the other half,
    # whatever the network predicts in the ignored half.
    half = masked_dice_ce(logits[..., 2:], label[..., 2:])
    assert float(masked_dice_ce(logits, hidden)) == pytest.approx(float(half), rel=1e-6)
    changed = logits.clone()
    changed[..., :2] = torch.randn(1, 3, 4, 4, 2) * 5
    assert float(masked_dice_ce(changed, hidden)) == pytest.approx(float(half), rel=1e-6)
    # With nothing ignored it is MONAI's Dice + CE (batch Dice, background included).
    from monai.losses import DiceCELoss

    ref = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)(logits, label)
    assert float(masked_dice_ce(logits, label)) == pytest.approx(float(ref), rel=1e-5)
