"""The Ray engine on a local Ray cluster (2 CPUs, one per module): the same cohort
gives the same outputs as the local engine, and a killed actor's study is retried.

Skipped when Ray is not installed (``pip install 'medrecon[ray]'``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cohort_helpers import BAD, GOOD, build_cohort, hung_study, read_cohort_csv

from medrecon.cohort import CohortSpec, EngineSettings, Reporting, StudySettings, run_cohort

ray = pytest.importorskip("ray")

REAL = ("philips-axial",)
_SAME = ("status", "input", "input_kind", "series_uid", "series_number", "device", "ball_ml")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster for the module, shut down (all its processes) afterwards."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def cohort(shared_data, tmp_path_factory) -> Path:
    # With a real scanner series too (Philips CT, 28 slices of 512x512).
    return build_cohort(shared_data, tmp_path_factory.mktemp("ray-cohort-in"), real_dicom=True)


@pytest.fixture(scope="module")
def local_out(cohort, ball_pipeline, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray-cohort-local") / "out"
    study = StudySettings(model=ball_pipeline, device="cpu")
    run_cohort(cohort, out, CohortSpec(study, EngineSettings(workers=0, retries=0)))
    return out


def test_ray_gives_the_same_outputs_as_the_local_engine(
    local_ray, cohort, local_out, ball_pipeline, tmp_path
):
    out = tmp_path / "ray"
    study = StudySettings(model=ball_pipeline, device="cpu")
    engine = EngineSettings(kind="ray", workers=2, retries=1)
    result = run_cohort(cohort, out, CohortSpec(study, engine))
    assert result.n_workers == 2
    assert {r.study for r in result.complete} == set(GOOD + REAL)
    assert {r.study for r in result.failed} == set(BAD)
    assert len({r.worker for r in result.complete}) <= 2  # models loaded once per actor
    for name in GOOD + REAL:
        a = nib.load(local_out / name / "labels.nii.gz")
        b = nib.load(out / name / "labels.nii.gz")
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)
        stats_a = json.loads((local_out / name / "stats.json").read_text())["labels"]
        stats_b = json.loads((out / name / "stats.json").read_text())["labels"]
        assert stats_a == stats_b
        files_a = json.loads((local_out / name / "run.json").read_text())["outputs"]
        assert files_a == json.loads((out / name / "run.json").read_text())["outputs"]
    rows_a, rows_b = read_cohort_csv(local_out / "cohort.csv"), read_cohort_csv(out / "cohort.csv")
    assert list(rows_a) == list(rows_b)
    for name in rows_a:
        assert {c: rows_a[name][c] for c in _SAME} == {c: rows_b[name][c] for c in _SAME}
    for name in BAD:
        assert "NoImageError" in (out / name / "error.txt").read_text()


def test_killed_ray_worker_study_is_retried_and_completes(
    local_ray, cohort, ball_pipeline, tmp_path
):
    from cohort_helpers import kill_worker_on_start

    kill_first, killed = kill_worker_on_start("ct-lps")

    spec = CohortSpec(
        study=StudySettings(model=ball_pipeline, device="cpu"),
        engine=EngineSettings(kind="ray", workers=1),
        reporting=Reporting(on_event=kill_first),
    )
    result = run_cohort(cohort, tmp_path / "out", spec)
    record = next(r for r in result.records if r.study == "ct-lps")
    assert killed and record.status == "complete" and record.attempts == 2
    assert int(record.worker.rsplit(":", 1)[1]) != killed[0]
    assert {r.study for r in result.complete} == set(GOOD + REAL)
    assert "Ray worker" in (tmp_path / "out" / "cohort.log").read_text()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_ray_hung_study_is_killed_at_its_timeout_and_the_rest_go_on(
    local_ray, cohort, ball_pipeline, tmp_path
):
    manifest = tmp_path / "m.json"
    hung = hung_study(tmp_path / "hung")
    manifest.write_text(json.dumps([{"path": str(hung)}, {"path": str(cohort / "ct-ras")}]))
    spec = CohortSpec(
        study=StudySettings(model=ball_pipeline, device="cpu"),
        engine=EngineSettings(kind="ray", workers=1, timeout=8, retries=0),
    )
    stuck, fast = run_cohort(manifest, tmp_path / "out", spec).records
    assert stuck.status == "failed" and "timed out after 8 s" in stuck.error
    assert (tmp_path / "out" / "hung" / "error.txt").is_file()
    assert fast.status == "complete" and fast.worker != stuck.worker  # on the new actor
