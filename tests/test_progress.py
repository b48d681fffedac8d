"""Progress inside long stages: headers read, windows segmented; each stage shown once."""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import ball_ct

from medrecon.pipeline.infer import count_windows
from medrecon.progress import StageProgress, counted, stage_scope, update
from medrecon.testing.dicom_series import write_ct_series

ROOT = Path(__file__).resolve().parents[1]
STEP = re.compile(r"^  (\S+)\s+(.+?) (\d+)/(\d+) \((\d+)%\)$")
DONE = re.compile(r"^  (\S+)\s+(\d+\.\d\d) s$")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 40-slice CT of a bright ellipsoid, written as a real DICOM series."""
    root = tmp_path_factory.mktemp("progress-study")
    image, _ = ball_ct((56, 48, 40), (28, 22, 20), (13, 10, 9), np.random.default_rng(3))
    affine = np.diag([1.8, 1.8, 2.2, 1.0])
    write_ct_series(image, affine, root / "ct", series_number=2, series_description="ball")
    return root / "ct"


@pytest.mark.parametrize(
    ("shape", "roi", "overlap"),
    [
        ((40, 33, 17), (16, 16, 16), 0.25),
        ((40, 33, 17), (16, 16, 16), 0.5),
        ((64, 64, 64), (64, 64, 64), 0.5),  # exactly one window
        ((10, 70, 31), (16, 32, 8), 0.0),  # padded axis, no overlap
        ((50, 20, 9), (24, -1, 8), 0.75),  # -1: the whole axis
    ],
)
def test_count_windows_is_what_monai_runs(shape, roi, overlap):
    """The total is the number of windows MONAI's sliding_window_inference really cuts."""
    import torch
    from monai.inferers import sliding_window_inference

    seen = []

    def predictor(window):
        seen.append(window.shape[0])
        return window

    sliding_window_inference(torch.zeros((1, 1, *shape)), roi, 3, predictor, overlap=overlap)
    assert count_windows(shape, roi, overlap) == sum(seen)


def test_step_lines_are_rate_limited_and_end_with_the_last_count():
    quiet = io.StringIO()
    progress = StageProgress(quiet, every_s=3600)
    with stage_scope(progress, "segment"):
        for item in counted(range(50), "windows", 50):
            assert isinstance(item, int)
    progress("segment", 1.5)
    # A stage shorter than every_s shows only its time.
    assert quiet.getvalue() == "  segment         1.50 s\n"

    every = io.StringIO()
    progress = StageProgress(every, every_s=0)
    with stage_scope(progress, "load"):
        update("headers", 1, 3)
        update("headers", 3, 3)
    update("headers", 2, 3)  # outside a stage: nobody listens
    progress("load", 0.25)
    assert every.getvalue().splitlines() == [
        "  load         headers 1/3 (33%)",
        "  load         headers 3/3 (100%)",
        "  load            0.25 s",
    ]


def test_a_plain_callback_hears_only_finished_stages():
    calls = []
    with stage_scope(lambda stage, s: calls.append(stage), "segment"):
        update("windows", 1, 2)  # no listener set: a no-op, not an error
    assert calls == []


def test_run_shows_headers_windows_and_each_stage_once_with_v(study, ball_pipeline, tmp_path):
    """``medrecon -v run`` in a fresh process: the load's headers and the segmentation's
    windows count up to their totals; each stage's time is printed once, not also logged."""
    script = (
        "import sys\n"
        "import medrecon.cli.run as cli_run\n"
        "from medrecon.cli.main import main\n"
        "from medrecon.progress import StageProgress\n"
        "cli_run._progress = StageProgress(every_s=0)  # every step, so the test sees them\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "out"
    argv = ["-v", "run", str(study), "-o", str(out), "--pipeline", str(ball_pipeline)]
    argv += ["--device", "cpu", "--outputs", "labels"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    done = [m.group(1) for m in map(DONE.match, lines) if m]
    assert done.count("load") == 1 and done.count("segment") == 1 and done.count("labels") == 1
    assert not [ln for ln in lines if re.match(r"INFO (load|segment|labels): \d", ln)]

    steps = [m.groups() for m in map(STEP.match, lines) if m]
    headers = [(int(d), int(t)) for stage, what, d, t, _ in steps if what == "headers"]
    assert headers[-1] == (40, 40) and [d for d, _ in headers] == list(range(1, 41))
    assert {stage for stage, what, *_ in steps if what == "headers"} == {"load"}
    windows = [(int(d), int(t)) for stage, what, d, t, _ in steps if what == "windows"]
    assert {stage for stage, what, *_ in steps if what == "windows"} == {"segment"}

    # The total: MONAI's window count on the model grid (2 mm spacing), no TTA flips.
    import medrecon
    from medrecon.pipeline.preprocess import prepare_input
    from medrecon.pipeline.registry import load_pipeline

    pipe = load_pipeline(ball_pipeline)
    grid = prepare_input(medrecon.load(study), pipe.preprocess).spatial_shape
    total = count_windows(grid, pipe.inference.roi_size, pipe.inference.overlap)
    total *= 1 + len(pipe.inference.tta_flips)
    assert total > 1 and {t for _, t in windows} == {total}
    assert windows[-1][0] == total
    assert all(b > a for (a, _), (b, _) in itertools.pairwise(windows))
    # Stage lines come after their steps: the load's time follows its last header.
    load_line = next(i for i, ln in enumerate(lines) if (m := DONE.match(ln)) and m[1] == "load")
    assert load_line > max(i for i, ln in enumerate(lines) if "headers 40/40" in ln)
