"""A CLI that never surprises: --overwrite replaces only medrecon's folders, an
unwritable output fails in one line before anything is loaded, a study the
pipeline is not made for is refused (unless --force), implausible volumes are
flagged, and ``batch`` runs a real DICOM study in its default worker process.

Real inputs: the bundled sample study, the MR and head CT of ../shared/data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pipeline_helpers import ball_ct

from medrecon.cli.main import main
from medrecon.errors import OutputError, OutputExistsError
from medrecon.study.output_folder import make_staging_folder, written_by_medrecon
from medrecon.study.runner import run_study
from medrecon.testing.dicom_series import write_ct_series

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "ct-abdomen"


@pytest.fixture(scope="module")
def ball_study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ball")
    image, _ = ball_ct((48, 40, 32), (24, 20, 16), (11, 9, 8), np.random.default_rng(3))
    affine = np.diag([1.8, 1.8, 2.2, 1.0])
    write_ct_series(image, affine, root / "ct", series_number=2, series_description="ball")
    return root / "ct"


# --- --overwrite ------------------------------------------------------------------


def test_overwrite_refuses_a_folder_of_other_files_and_keeps_them(ball_study, tmp_path, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    (out / "figures").mkdir()
    code = main(["run", str(ball_study), "-o", str(out), "--overwrite", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "did not write (chapter1.tex, figures)" in err and "run.json" in err
    assert (out / "chapter1.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]  # no staging left


def test_overwrite_replaces_an_earlier_run_and_an_empty_folder(ball_study, ball_pipeline, tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # empty: nothing to lose
    first = run_study(ball_study, out, pipeline=ball_pipeline, overwrite=True, device="cpu")
    assert first.status == "complete"
    assert written_by_medrecon(out) == "holds the run.json of an earlier medrecon run"
    stamp = json.loads((out / "run.json").read_text())["finished"]
    second = run_study(ball_study, out, pipeline=ball_pipeline, overwrite=True, device="cpu")
    assert second.status == "complete"
    assert json.loads((out / "run.json").read_text())["finished"] >= stamp
    # A run.json some other tool wrote is not medrecon's.
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"status": "complete"}))
    with pytest.raises(OutputExistsError, match="did not write"):
        run_study(ball_study, other, pipeline=ball_pipeline, overwrite=True)


def test_a_failed_cohort_attempt_folder_counts_as_medrecon_s(tmp_path):
    from medrecon.cohort.state import StudyRecord, write_error

    record = StudyRecord(study="s1", status="failed", input="x", error="boom")
    write_error(tmp_path / "s1", record, "x")
    assert (
        written_by_medrecon(tmp_path / "s1")
        == "holds only the error.txt of a failed cohort attempt"
    )
    (tmp_path / "s1" / "notes.txt").write_text("mine")
    assert written_by_medrecon(tmp_path / "s1") is None


# --- unwritable output --------------------------------------------------------------


def test_output_under_a_file_fails_in_one_line_before_anything_is_loaded(ball_study, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    code = (
        "import sys\n"
        "from medrecon.cli.main import main\n"
        f"rc = main(['run', {str(ball_study)!r}, '-o', {str(blocker / 'out')!r}, "
        "'--pipeline', 'abdomen-ct', '--no-progress'])\n"
        "print('RC', rc, 'torch' in sys.modules, 'monai' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "RC 2 False False" in proc.stdout, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("medrecon run: error: cannot write the output")
    assert f"{blocker} is a file, not a folder" in lines[0]


def test_read_only_file_system(ball_study, tmp_path):
    """A real read-only mount (a private mount namespace); skipped where not allowed."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root to mount a read-only file system")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    run = (
        f"mount -t tmpfs -o ro tmpfs {mnt} && {sys.executable} -m medrecon.cli.main run "
        f"{ball_study} -o {mnt / 'out'} --pipeline abdomen-ct --no-progress"
    )
    proc = subprocess.run(["unshare", "-m", "sh", "-c", run], capture_output=True, text=True)
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount here: {proc.stderr.strip()}")
    assert proc.returncode == 2, proc.stderr
    assert "Read-only file system" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_make_staging_folder_names_the_place(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match=r"cannot write the output .*f/out: .*f is a file"):
        make_staging_folder(tmp_path / "f" / "out")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() != 0:  # root writes anyway; the read-only mount test covers it
        with pytest.raises(OutputError, match="Permission denied"):
            make_staging_folder(locked / "out")


# --- out of domain ------------------------------------------------------------------


def test_mr_through_the_ct_pipeline_is_refused_unless_forced(shared_data, tmp_path, capsys):
    mr = shared_data / "mr-abdomen" / "mr.nii.gz"
    out = tmp_path / "o"
    base = ["run", str(mr), "-o", str(out), "--pipeline", "abdomen-ct", "--outputs", "labels,stats"]
    assert main([*base, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the study is MR (modality inferred from its intensities" in err
    assert "made for CT images" in err and "--force" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert main([*base, "--no-progress", "--force"]) == 0
    shown = capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    forced = [w for w in record["warnings"] if "segmented anyway (--force)" in w]
    assert len(forced) == 1 and "warning: " + forced[0] in shown
    assert record["input"]["modality_source"].startswith("modality inferred from its intensities")


def test_head_ct_is_refused_by_body_part_with_auto_and_explicit(shared_data, tmp_path, capsys):
    head = shared_data / "dicom" / "ct-ge-tilt-uneven"  # BodyPartExamined HEAD
    for pipeline in ("auto", "abdomen-ct"):
        out = tmp_path / pipeline
        code = main(["run", str(head), "-o", str(out), "--pipeline", pipeline, "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2
        assert "body part is HEAD (BodyPartExamined)" in err and "--force" in err
        assert not out.exists()


def test_segment_refuses_mr_through_ct_too(shared_data, tmp_path, capsys):
    mr = shared_data / "mr-abdomen" / "mr.nii.gz"
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(mr), "-o", str(out), "--pipeline", "abdomen-ct"]) == 2
    assert "--force" in capsys.readouterr().err and not out.exists()


def test_implausible_volumes_are_flagged_in_run_json_stats_and_cli(shared_data, tmp_path, capsys):
    """A 24 mm slab of the real CT: the organs it cuts are far below a whole organ's
    volume and touch the edge of the scan; each is flagged in all three places."""
    ct = nib.load(shared_data / "ct-abdomen" / "ct.nii.gz")
    slab = tmp_path / "slab.nii.gz"
    nib.save(ct.slicer[:, :, 60:68], slab)
    out = tmp_path / "o"
    args = ["run", str(slab), "-o", str(out), "--pipeline", "abdomen-ct", "--no-progress"]
    assert main([*args, "--outputs", "labels,stats"]) == 0
    shown = capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    stats = json.loads((out / "stats.json").read_text())["labels"]
    flagged = {r["name"]: r["check"] for r in stats if r["check"]}
    assert flagged, "a 24 mm slab cuts organs far below their whole volume"
    for name, message in flagged.items():
        row = next(r for r in stats if r["name"] == name)
        assert row["volume_ml"] < row["expected_min_ml"]
        assert "may be cut by the field of view" in message
        assert message in record["warnings"] and f"warning: {message}" in shown
    assert "check" in (out / "stats.csv").read_text().splitlines()[0].split(",")


# --- batch on a real DICOM study ----------------------------------------------------


def test_batch_runs_the_sample_study_in_its_default_worker(tmp_path):
    """The default engine's worker is a daemonic process: the header reader must not
    start a process pool there (the sample study has 112 files, above the pool's
    threshold)."""
    assert len(list(SAMPLE.glob("*.dcm"))) >= 64
    out = tmp_path / "cohort"
    args = ["batch", str(SAMPLE), "-o", str(out), "--outputs", "labels", "--retries", "0"]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 0
    (study,) = [p for p in out.iterdir() if p.is_dir()]
    record = json.loads((study / "run.json").read_text())
    assert record["status"] == "complete" and record["input"]["n_source_files"] == 112
