"""``--pipeline auto``: the modality (from the header, or guessed from intensities)
picks the shipped pipeline; a modality without one is a clear error.

The choice is tested without running a network wherever the code allows; one
end-to-end ``run_study`` runs the shipped network on the real MR.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medrecon
from medrecon.errors import InputError, PipelineError
from medrecon.pipeline.auto import (
    AIR_HU,
    FAT_HU,
    choose_pipeline,
    guess_modality,
    is_auto,
)
from medrecon.pipeline.registry import load_pipeline, pipelines_for_modality, shipped_modalities
from medrecon.study.output_options import OutputOptions
from medrecon.volume import Volume

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct-abdomen"


def test_intensity_guess_on_the_real_ct_and_mr(shared_data):
    ct = medrecon.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    mr = medrecon.load(shared_data / "mr-abdomen" / "mr.nii.gz")
    assert ct.meta.modality is None and mr.meta.modality is None  # NIfTI: nothing to read
    guess = guess_modality(ct.array)
    assert guess.modality == "CT" and "air in Hounsfield units" in guess.reason
    # The real MR has a few small negative ripples (down to -47): still MR.
    assert mr.array.min() < 0
    guess = guess_modality(mr.array)
    assert guess.modality == "MR" and "like MR" in guess.reason


def test_intensity_guess_on_a_ct_cropped_to_the_body(shared_data):
    from cohort_helpers import ct_block

    block, _ = ct_block(shared_data)  # the cohort tests' CT: through the liver, no air
    assert np.mean(block < AIR_HU) < 0.01
    guess = guess_modality(block)
    assert guess.modality == "CT" and "fat in Hounsfield units" in guess.reason


def test_intensity_guess_rules():
    rng = np.random.default_rng(0)
    body = rng.normal(40, 20, (20, 20, 20))
    air = body.copy()
    air[:, :, :2] = -1000  # 10% air
    assert guess_modality(air).modality == "CT"
    fat = body.copy()
    fat[:, :, :2] = -100  # 10% fat, no air
    assert guess_modality(fat).modality == "CT"
    mr = np.abs(rng.normal(300, 100, (20, 20, 20))) - 5  # a few small negatives
    assert guess_modality(mr).modality == "MR"
    assert guess_modality(mr.astype(np.uint16)).modality == "MR"
    with_nan = air.astype(np.float32)
    with_nan[:, :, 10:] = np.nan  # NaN voxels are not counted: 20% of the rest is air
    assert guess_modality(with_nan).modality == "CT"
    assert f"below {FAT_HU:g}" in guess_modality(mr).reason
    with pytest.raises(InputError, match="without voxel values"):
        guess_modality(np.full((2, 2, 2), np.nan))


def test_shipped_pipelines_are_found_by_modality():
    assert [p.name for p in pipelines_for_modality("CT")] == ["abdomen-ct"]
    assert [p.name for p in pipelines_for_modality("mr")] == ["abdomen-mr"]
    assert pipelines_for_modality("PT") == []
    assert shipped_modalities() == ["CT", "MR"]
    assert is_auto("auto") and not is_auto("abdomen-ct") and not is_auto(Path("auto"))
    with pytest.raises(PipelineError, match="'auto' chooses a shipped pipeline per study"):
        load_pipeline("auto")


def test_auto_picks_abdomen_ct_for_the_sample_dicom():
    if not SAMPLE.is_dir():
        pytest.skip("sample_data/ct-abdomen is missing")
    choice = choose_pipeline(medrecon.load(SAMPLE), where=str(SAMPLE))
    assert (choice.name, choice.modality) == ("abdomen-ct", "CT")
    assert choice.reason == "auto: modality CT from the input's header -> abdomen-ct"
    assert choice.warnings == ()  # a header modality needs no warning
    assert choice.path.name == "abdomen-ct.yaml"


@pytest.mark.parametrize(
    ("rel", "name"),
    [("ct-abdomen/ct.nii.gz", "abdomen-ct"), ("mr-abdomen/mr.nii.gz", "abdomen-mr")],
)
def test_auto_picks_by_intensities_for_nifti(shared_data, rel, name):
    choice = choose_pipeline(medrecon.load(shared_data / rel), where=rel)
    assert choice.name == name
    assert "no modality tag; intensities look like" in choice.reason
    (warning,) = choice.warnings
    assert "inferred from its intensities" in warning and "--model" in warning


def test_a_modality_without_a_pipeline_is_a_clear_input_error():
    volume = Volume(np.zeros((4, 4, 4), np.int16), np.eye(4))
    volume.meta.modality = "US"
    with pytest.raises(InputError) as err:
        choose_pipeline(volume, where="/data/study9")
    text = str(err.value)
    assert "/data/study9" in text and "US images" in text and "--model" in text
    assert "CT, MR" in text
    # DICOM's "OT" (or no Modality tag) names no modality: the intensities decide.
    volume.meta.modality = "OT"
    assert choose_pipeline(volume).name == "abdomen-mr"


def _pt_study(folder: Path) -> Path:
    """A DICOM series whose header says PT (no shipped pipeline is made for PET)."""
    from medrecon.testing.dicom_series import write_ct_series

    image = np.full((16, 16, 10), 40, np.int16)
    for path in write_ct_series(image, np.eye(4), folder / "pt"):
        ds = pydicom.dcmread(path)
        ds.Modality = "PT"
        ds.save_as(path)
    return folder / "pt"


def test_run_study_auto_refuses_a_pet_study_before_loading_a_model(tmp_path):
    from medrecon.study.runner import run_study

    study = _pt_study(tmp_path / "in")
    with pytest.raises(InputError) as err:
        run_study(study, tmp_path / "out", device="cpu")
    text = str(err.value)
    assert str(study) in text and "PT images" in text and "--model" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing left behind


def test_run_study_auto_on_the_real_mr(shared_data, tmp_path):
    from medrecon.study.runner import run_study

    source = shared_data / "mr-abdomen" / "mr.nii.gz"
    labels_only = OutputOptions(outputs=("labels",))
    result = run_study(source, tmp_path / "out", device="cpu", output_options=labels_only)
    assert result.pipeline == "abdomen-mr"
    record = json.loads(result.run_json.read_text())
    assert record["pipeline"]["name"] == "abdomen-mr"
    assert record["pipeline"]["choice"].startswith("auto: no modality tag")
    assert record["pipeline"]["weights"].endswith("abdomen-ct.pt")  # the shared network
    assert any("inferred from its intensities" in w for w in record["warnings"])
    labels = medrecon.load(tmp_path / "out" / "labels.nii.gz")
    assert labels.shape == medrecon.load(source).shape


def test_segmenter_cache_loads_a_shared_network_once():
    from medrecon.models.cache import SegmenterCache

    cache = SegmenterCache(device="cpu")
    ct = cache.get("abdomen-ct")
    mr = cache.get("abdomen-mr")
    assert cache.get("abdomen-ct") is ct
    assert cache.get(load_pipeline("abdomen-mr")) is mr  # the same pipeline as an object
    assert len(cache) == 2 and cache.n_networks == 1
    assert ct.net is mr.net  # one weights file, one network in memory
    assert ct.pipeline.preprocess.intensity.mode == "ct_window"
    assert mr.pipeline.preprocess.intensity.mode == "percentile"


def test_segment_cli_defaults_to_auto(shared_data, tmp_path, capsys):
    import nibabel as nib

    from medrecon.cli.main import main

    block = nib.load(shared_data / "mr-abdomen" / "mr.nii.gz").slicer[30:78, 25:65, :]
    source = tmp_path / "mr.nii.gz"
    nib.save(block, source)
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(source), "-o", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "model abdomen-mr (auto: no modality tag" in text
    assert "warning: the input has no modality tag" in text
    assert nib.load(out).shape == block.shape
