"""CohortSpec's groups check their values when they are made, with the messages
``medrecon batch`` prints, before any study is looked at."""

from __future__ import annotations

import pytest

from medrecon.cli.main import main
from medrecon.cohort import CohortSpec, EngineKind, EngineSettings, StudySettings
from medrecon.errors import InputError
from medrecon.study.output_options import OutputOptions


def test_defaults_run_auto_on_one_local_worker():
    spec = CohortSpec()
    assert spec.study == StudySettings(model=None, device="auto", output_options=OutputOptions())
    assert spec.engine.kind is EngineKind.LOCAL and str(spec.engine.kind) == "local"
    assert (spec.engine.workers, spec.engine.retries, spec.force, spec.layout) == (
        None,
        2,
        False,
        "auto",
    )
    assert EngineSettings(kind="ray", gpus_per_study=0.5).kind is EngineKind.RAY


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kind": "slurm"}, "engine must be one of local, ray, not 'slurm'"),
        ({"retries": -1}, "retries must be 0 or more, not -1"),
        ({"timeout": 0}, "timeout must be a positive number of seconds, not 0"),
        ({"threads": 0}, "threads must be 1 or more, not 0"),
        ({"address": "auto"}, "--address and --gpus-per-study apply to --engine ray only"),
        ({"workers": 0, "timeout": 5}, "a study timeout needs worker processes"),
    ],
)
def test_each_bad_engine_setting_is_refused(values, message):
    with pytest.raises(InputError) as caught:
        EngineSettings(**values)
    assert str(caught.value).startswith(message)


def test_batch_refuses_a_bad_option_before_reading_the_input(tmp_path, capsys):
    args = ["batch", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]
    assert main([*args, "--mesh-format", "fbx", "--no-progress"]) == 2
    assert "mesh format 'fbx': choose one of stl, obj, ply, vtp" in capsys.readouterr().err
    assert main([*args, "--timeout", "5", "--workers", "0", "--no-progress"]) == 2
    assert "a study timeout needs worker processes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
