"""Cohorts on the local engine: discovery, fault isolation, cohort.csv, resume,
a killed worker, a killed ``medrecon batch`` restarted.

The cohort is built from ../shared/data (tests/cohort_helpers.py); the network is
the small UNet trained in this session (``ball_pipeline``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cohort_helpers import BAD, GOOD, build_cohort, hung_study, read_cohort_csv

from medrecon.cli.main import main
from medrecon.cohort import (
    CohortSpec,
    EngineSettings,
    Reporting,
    StudySettings,
    discover_studies,
    read_manifest,
    run_cohort,
)
from medrecon.cohort.studies import sanitise_id, unique_ids
from medrecon.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _inline(model) -> CohortSpec:
    """The cohort run in this process (``workers=0``) on the CPU with ``model``."""
    return CohortSpec(StudySettings(model=model, device="cpu"), EngineSettings(workers=0))


@pytest.fixture(scope="module")
def cohort(shared_data, tmp_path_factory) -> Path:
    return build_cohort(shared_data, tmp_path_factory.mktemp("cohort-in"))


@pytest.fixture(scope="module")
def first_run(cohort, ball_pipeline, tmp_path_factory):
    """The cohort through the CLI: one worker process, one retry."""
    out = tmp_path_factory.mktemp("cohort-out") / "out"
    args = ["batch", str(cohort), "-o", str(out), "--pipeline", str(ball_pipeline)]
    code = main([*args, "--device", "cpu", "--retries", "1", "--no-progress"])
    return code, out


def test_ids_are_sanitised_unique_and_stable():
    assert sanitise_id("Patient 01 / CT (arterial)") == "Patient_01_CT_arterial"
    assert sanitise_id("../..") == "study"
    assert unique_ids(["a b", "a_b", "A_B", "cohort.csv", "x"]) == [
        "a_b",
        "a_b-2",
        "A_B-3",
        "cohort.csv-2",
        "x",
    ]


def test_folder_layout_finds_study_folders_and_volume_files(tmp_path):
    (tmp_path / "b study").mkdir()
    (tmp_path / "b study" / "IM1.dcm").write_bytes(b"x")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ct.nii.gz").write_bytes(b"x")
    (tmp_path / "c.nrrd").write_bytes(b"x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "notes.txt").write_text("not a study")
    studies = discover_studies(tmp_path)
    assert [s.id for s in studies] == ["a", "b_study", "c"]
    # A folder holding one volume file is that file; a DICOM folder stays a folder.
    assert [s.path for s in studies] == [
        tmp_path / "a" / "ct.nii.gz",
        tmp_path / "b study",
        tmp_path / "c.nrrd",
    ]


def test_dicom_folder_is_split_by_study_uid(shared_data, tmp_path):
    from medrecon.testing.dicom_series import write_ct_series

    flat = tmp_path / "flat"
    image = np.zeros((8, 8, 9), np.int16)
    for n in (1, 2):
        write_ct_series(image, np.eye(4), tmp_path / f"s{n}", study_description=f"study {n}")
    flat.mkdir()
    for n in (1, 2):
        for f in sorted((tmp_path / f"s{n}").iterdir()):
            f.rename(flat / f"{n}_{f.name}")
    (flat / "garbage.dcm").write_bytes(b"not dicom")
    studies = discover_studies(flat)
    assert len(studies) == 2
    assert sorted(len(s.files) for s in studies) == [9, 9]
    assert all(s.path == flat and s.id == s.source for s in studies)  # UIDs are safe names
    assert {f.name[0] for f in studies[0].files} in ({"1"}, {"2"})


def test_manifest_csv_and_json(tmp_path):
    (tmp_path / "m.csv").write_text(
        "study_id,path,series,dicom_seg,group\nP 1,data/p1,3,no,control\n,data/p2,,,case\n"
    )
    one, two = read_manifest(tmp_path / "m.csv")
    assert (one.id, one.path, one.options) == (
        "P_1",
        tmp_path / "data/p1",
        {"series": "3", "dicom_seg": False},
    )
    assert (two.id, two.options, two.extra) == ("p2", {}, {"group": "case"})
    (tmp_path / "m.json").write_text(json.dumps({"studies": [{"path": "/abs/x", "mrb": True}]}))
    (study,) = discover_studies(tmp_path / "m.json")
    assert (study.id, study.path, study.options) == ("x", Path("/abs/x"), {"mrb": True})
    (tmp_path / "bad.csv").write_text("study_id,path\nA,\n")
    with pytest.raises(InputError, match=r"bad.csv row 2: no 'path'"):
        read_manifest(tmp_path / "bad.csv")


def test_good_studies_complete_and_bad_ones_are_recorded(first_run):
    code, out = first_run
    assert code == 1  # some failed
    rows = read_cohort_csv(out / "cohort.csv")
    assert list(rows) == sorted(GOOD + BAD)
    for name in GOOD:
        assert rows[name]["status"] == "complete", rows[name]["error"]
        assert json.loads((out / name / "run.json").read_text())["status"] == "complete"
        assert not (out / name / "error.txt").exists()
    for name in BAD:
        assert rows[name]["status"] == "failed"
        assert rows[name]["attempts"] == "1"  # input errors are not retried
        assert "NoImageError" in rows[name]["error"]
        text = (out / name / "error.txt").read_text()
        assert f"study: {name}" in text and "Traceback (most recent call last)" in text
        assert sorted(p.name for p in (out / name).iterdir()) == ["error.txt"]
    assert "corrupt: failed after 1 attempt(s)" in (out / "cohort.log").read_text()


def test_cohort_csv_matches_each_study_and_its_label_map(first_run):
    _, out = first_run
    rows = read_cohort_csv(out / "cohort.csv")
    workers = {rows[name]["worker"] for name in GOOD}
    assert len(workers) == 1  # one worker process: the model was loaded once for all studies
    for name in GOOD:
        row = rows[name]
        stats = json.loads((out / name / "stats.json").read_text())["labels"]
        run = json.loads((out / name / "run.json").read_text())
        labels = nib.load(out / name / "labels.nii.gz")
        voxel_ml = abs(np.linalg.det(labels.affine[:3, :3])) / 1000
        count = int((np.asarray(labels.dataobj) == 1).sum())
        assert float(row["ball_ml"]) == pytest.approx(count * voxel_ml, rel=1e-5)
        assert float(row["ball_ml"]) == pytest.approx(stats[0]["volume_ml"], rel=1e-5)
        assert row["series_uid"] == (run["input"]["series_uid"] or "")
        assert row["device"] == "cpu"
        # The worker's time for the study holds every stage run.json timed.
        stages = sum(v for k, v in run["timings_s"].items() if "." not in k)
        assert stages <= float(row["seconds"]) < stages + 60
        assert row["pipeline"] == run["pipeline"]["name"] == "test-ball"
        assert float(row["time_segment_s"]) == pytest.approx(run["timings_s"]["segment"], abs=2e-3)
    assert rows["ct-dicom"]["input_kind"] == "dicom" and rows["ct-ras"]["input_kind"] == "nifti"
    # The LPS copy holds the same voxels as the RAS one: the same organ volume.
    assert rows["ct-lps"]["ball_ml"] == rows["ct-ras"]["ball_ml"]
    assert rows["corrupt"]["ball_ml"] == ""


def test_rerun_skips_complete_studies_and_retries_failed(first_run, cohort, ball_pipeline):
    _, out = first_run
    before = {n: (out / n / "run.json").stat().st_mtime_ns for n in GOOD}
    table = read_cohort_csv(out / "cohort.csv")
    events = []
    spec = CohortSpec(
        study=StudySettings(model=ball_pipeline, device="cpu"),
        engine=EngineSettings(workers=0),
        reporting=Reporting(on_event=events.append),
    )
    result = run_cohort(cohort, out, spec)
    assert {e.study for e in events if e.kind == "skip"} == set(GOOD)
    assert {e.study for e in events if e.kind == "start"} == set(BAD)
    assert before == {n: (out / n / "run.json").stat().st_mtime_ns for n in GOOD}
    again = read_cohort_csv(out / "cohort.csv")
    for name in GOOD:
        assert again[name]["resumed"] == "yes"
        for column in ("ball_ml", "series_uid", "input", "input_kind", "device", "time_segment_s"):
            assert again[name][column] == table[name][column], column
    assert [r.study for r in result.failed] == sorted(BAD)


def test_killed_worker_fails_the_attempt_and_the_study_is_retried(cohort, ball_pipeline, tmp_path):
    from cohort_helpers import kill_worker_on_start

    kill_first, killed = kill_worker_on_start("ct-lps")

    spec = CohortSpec(
        study=StudySettings(model=ball_pipeline, device="cpu"),
        reporting=Reporting(on_event=kill_first),
    )
    result = run_cohort(cohort, tmp_path / "out", spec)
    record = next(r for r in result.records if r.study == "ct-lps")
    assert killed and record.status == "complete" and record.attempts == 2
    assert int(record.worker.rsplit(":", 1)[1]) != killed[0]
    assert {r.study for r in result.complete} == set(GOOD)
    log = (tmp_path / "out" / "cohort.log").read_text()
    assert "attempt 1 failed (worker process" in log and "SIGKILL" in log


@pytest.mark.slow
def test_killed_batch_restarted_finishes_without_redoing(cohort, ball_pipeline, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medrecon.cli.main", "batch", str(cohort), "-o", str(out)]
    cmd += ["--pipeline", str(ball_pipeline), "--device", "cpu", "--no-progress"]
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / GOOD[0] / "run.json").exists():
        assert driver.poll() is None and time.monotonic() < deadline, "no study finished"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    log = (out / "cohort.log").read_text()
    worker_pid = int(log.split(" on ")[1].split(":")[1].split()[0])
    time.sleep(3)  # the worker notices its driver is gone within a second
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
    first = (out / GOOD[0] / "run.json").stat().st_mtime_ns
    done_before = {n for n in GOOD if (out / n / "run.json").exists()}
    result = run_cohort(cohort, out, CohortSpec(StudySettings(model=ball_pipeline, device="cpu")))
    assert {r.study for r in result.complete} == set(GOOD)
    assert {r.study for r in result.records if r.resumed} == done_before
    assert (out / GOOD[0] / "run.json").stat().st_mtime_ns == first
    leftovers = [p for p in out.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == [] and not (out / ".staging").exists()


def test_second_batch_on_the_same_outdir_is_refused(cohort, ball_pipeline, tmp_path):
    from medrecon.cohort.state import cohort_lock

    out = tmp_path / "out"
    out.mkdir()
    with cohort_lock(out), pytest.raises(InputError, match="being written by another"):
        run_cohort(cohort, out, CohortSpec(StudySettings(ball_pipeline), EngineSettings(workers=0)))


def test_manifest_cohort_keeps_its_columns_and_per_study_options(cohort, ball_pipeline, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "study_id,path,outputs,group,status\n"
        f"A/1,{cohort / 'ct-ras'},labels,control,x\n"
        f"B 2,{cohort / 'ct-dicom'},,case,y\n"
        "C,missing-folder,,case,z\n"
    )
    out = tmp_path / "out"
    result = run_cohort(manifest, out, _inline(ball_pipeline))
    rows = read_cohort_csv(out / "cohort.csv")
    assert list(rows) == ["A_1", "B_2", "C"]
    assert [rows[s]["group"] for s in rows] == ["control", "case", "case"]
    assert [rows[s]["manifest_status"] for s in rows] == ["x", "y", "z"]
    assert [rows[s]["status"] for s in rows] == ["complete", "complete", "failed"]
    assert "no such file or folder" in rows["C"]["error"]
    assert rows["C"]["attempts"] == "1" and not result.ok
    # outputs=labels for A/1: no stats, so no volume rather than a false 0 mL.
    files = json.loads((out / "A_1" / "run.json").read_text())["outputs"]
    assert "labels.nii.gz" in files and "stats.json" not in files
    assert rows["A_1"]["ball_ml"] == "" and float(rows["B_2"]["ball_ml"]) > 0


def test_partial_outputs_of_a_killed_run_are_removed_and_nothing_else(tmp_path):
    from medrecon.cohort.state import clean_partial

    (tmp_path / ".ct-ras.tmp-k3j_x9").mkdir()  # run_study's temporary folder
    (tmp_path / ".ct-ras.tmp-k3j_x9" / "labels.nii.gz").write_bytes(b"half")
    (tmp_path / ".ct-lps.old-123-456").mkdir()  # an old result set aside during --force
    (tmp_path / ".cohort.tmp-1a2b3c4d.csv").write_text("half")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / ".error.tmp-1a2b3c4d.txt").write_text("half")
    (tmp_path / ".staging" / "x").mkdir(parents=True)
    keep = [tmp_path / ".other.tmp-abc", tmp_path / "corrupt" / "error.txt", tmp_path / "notes"]
    for path in keep:
        path.write_text("keep")
    assert clean_partial(tmp_path, ["ct-ras", "ct-lps", "corrupt"]) == 5
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        ".other.tmp-abc",
        "corrupt",
        "corrupt/error.txt",
        "notes",
    ]


def test_split_dicom_studies_run_through_links(shared_data, ball_pipeline, tmp_path):
    from cohort_helpers import ct_block

    from medrecon.testing.dicom_series import write_ct_series

    array, affine = ct_block(shared_data)
    flat = tmp_path / "flat"
    for n in (1, 2):
        files = write_ct_series(array, affine, tmp_path / f"s{n}", study_description=f"study {n}")
        flat.mkdir(exist_ok=True)
        for f in files:
            f.rename(flat / f"{n}_{f.name}")
    out = tmp_path / "out"
    result = run_cohort(flat, out, _inline(ball_pipeline))
    assert result.ok and len(result.records) == 2
    rows = read_cohort_csv(out / "cohort.csv")
    assert all(r["input_kind"] == "dicom" and r["input"] == str(flat) for r in rows.values())
    assert rows[result.records[0].study]["ball_ml"] == rows[result.records[1].study]["ball_ml"]
    assert not (out / ".staging").exists()
    records = [json.loads((out / s / "run.json").read_text())["input"] for s in rows]
    assert {r["study_uid"] for r in records} == set(rows)  # each folder holds its study
    # run.json names the shared folder the study came from, not the temporary links.
    assert {r["path"] for r in records} == {str(flat.resolve())}


def test_force_redoes_complete_studies(cohort, ball_pipeline, tmp_path):
    manifest = tmp_path / "one.json"
    manifest.write_text(json.dumps([{"study_id": "one", "path": str(cohort / "ct-ras")}]))
    out = tmp_path / "out"
    run_cohort(manifest, out, _inline(ball_pipeline))
    first = (out / "one" / "run.json").stat().st_mtime_ns
    spec = replace(_inline(ball_pipeline), force=True)
    (result,) = run_cohort(manifest, out, spec).records
    assert not result.resumed and result.attempts == 1
    assert (out / "one" / "run.json").stat().st_mtime_ns != first


def test_cli_exit_code_2_when_the_cohort_cannot_run(cohort, tmp_path, capsys):
    code = main(["batch", str(cohort), "-o", str(tmp_path / "o"), "--pipeline", "no-such"])
    assert code == 2
    assert "no pipeline named 'no-such'" in capsys.readouterr().err


def test_auto_worker_loads_each_pipeline_once(shared_data, tmp_path):
    """One worker meeting CT, MR and CT again: one Segmenter per pipeline, built when
    first needed and then reused; abdomen-ct and abdomen-mr share one network."""
    from cohort_helpers import ct_block

    from medrecon.cohort.studies import Study
    from medrecon.cohort.worker import StudyWorker, WorkerSpec
    from medrecon.study.output_options import OutputOptions

    array, affine = ct_block(shared_data)
    ct = tmp_path / "in" / "ct.nii.gz"
    ct.parent.mkdir()
    nib.save(nib.Nifti1Image(array, affine), ct)
    mr_img = nib.load(shared_data / "mr-abdomen" / "mr.nii.gz")
    mr = tmp_path / "in" / "mr.nii.gz"
    nib.save(mr_img.slicer[30:78, 25:65, :], mr)  # a smaller block: a quick network pass
    settings = StudySettings(
        model="auto", device="cpu", output_options=OutputOptions(outputs=["labels"])
    )
    spec = WorkerSpec(study=settings, outdir=tmp_path / "out")
    worker = StudyWorker(spec)
    assert len(worker.segmenters) == 0  # auto loads nothing until a study needs it
    studies = [Study(id=i, path=p, source=str(p)) for i, p in (("a", ct), ("b", mr), ("c", ct))]
    records = [worker.process(study) for study in studies]
    assert [r.status for r in records] == ["complete"] * 3, [r.error for r in records]
    assert [r.pipeline for r in records] == ["abdomen-ct", "abdomen-mr", "abdomen-ct"]
    assert len(worker.segmenters) == 2 and worker.segmenters.n_networks == 1
    assert records[2].timings["load_model"] < records[0].timings["load_model"]


def test_auto_cohort_starts_without_loading_a_model(tmp_path):
    """With auto nothing is loaded up front; cohort.csv still has every shipped
    pipeline's label columns, and a study with no image fails as an input error."""
    (tmp_path / "in" / "empty").mkdir(parents=True)
    out = tmp_path / "out"
    result = run_cohort(tmp_path / "in", out, _inline(None))
    (record,) = result.failed
    assert "NoImageError" in record.error and not record.retryable
    header = (out / "cohort.csv").read_text().splitlines()[0].split(",")
    assert "pipeline" in header and "liver_ml" in header and "urinary_bladder_ml" in header


def test_progress_line_counts_and_eta():
    import io

    from medrecon.cohort import CohortEvent, ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(4, stream=stream, width=8)
    bar(CohortEvent("skip", "a"))
    bar(CohortEvent("start", "b", 1, "h:1"))
    bar(CohortEvent("complete", "b", 1, "h:1"))
    bar(CohortEvent("failed", "c", 3, "h:1"))
    assert bar.remaining == 1 and bar.eta() is not None
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("b: complete | [####----] 2/4 | 1 done 0 failed 2 left")
    assert "(1 already done) | ETA " in lines[0]
    assert lines[1].startswith("c: failed | [######--] 3/4 | 1 done 1 failed 1 left")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_hung_study_is_killed_at_its_timeout_and_the_rest_go_on(cohort, ball_pipeline, tmp_path):
    manifest = tmp_path / "m.json"
    hung = hung_study(tmp_path / "hung")
    rows = [{"path": str(cohort / "ct-ras")}, {"path": str(hung)}, {"path": str(cohort / "ct-lps")}]
    manifest.write_text(json.dumps(rows))
    out = tmp_path / "out"
    t0 = time.monotonic()
    spec = CohortSpec(
        study=StudySettings(model=ball_pipeline, device="cpu"),
        engine=EngineSettings(timeout=8, retries=0),
    )
    first, stuck, last = run_cohort(manifest, out, spec).records
    assert stuck.status == "failed" and "timed out after 8 s" in stuck.error
    assert "timed out after 8 s" in (out / "hung" / "error.txt").read_text()
    assert first.status == last.status == "complete"
    assert last.worker != stuck.worker  # the killed worker was replaced
    assert time.monotonic() - t0 < 60
