"""OutputOptions: every value checked once, when the options are made, with the
messages ``medrecon run`` gives; a manifest row's bad option names its row; the
plan follows the pipeline's list when no outputs are chosen."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import pytest

from medrecon.cohort import read_manifest
from medrecon.cohort.studies import Study, study_output_options
from medrecon.errors import InputError
from medrecon.export import MESH_FORMATS
from medrecon.pipeline.config import OUTPUTS
from medrecon.study.output_options import OUTPUT_OPTIONS, MeshFormat, OutputOptions
from medrecon.study.outputs import OutputPlan


def test_defaults_and_coercion():
    options = OutputOptions()
    assert (options.mesh_format, options.dicom_seg, options.mrb, options.outputs) == (
        MeshFormat.STL,
        True,
        False,
        None,
    )
    chosen = OutputOptions(mesh_format="obj", outputs=["labels", "scene"], mrb=True)
    assert chosen.mesh_format is MeshFormat.OBJ and str(chosen.mesh_format) == "obj"
    assert chosen.outputs == ("labels", "scene")  # a tuple: frozen all the way down
    assert [f.value for f in MeshFormat] == list(MESH_FORMATS)
    assert pickle.loads(pickle.dumps(chosen)) == chosen  # it travels to worker processes
    assert OUTPUT_OPTIONS == ("mesh_format", "dicom_seg", "mrb", "outputs")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mesh_format": "fbx"}, "mesh format 'fbx': choose one of stl, obj, ply, vtp"),
        ({"outputs": ["labels", "movie"]}, "unknown output(s) ['movie']; choose from image, "),
        (
            {"mrb": True, "outputs": ["labels"]},
            "--mrb packs the scene; the scene output is not selected",
        ),
        ({"dicom_seg": "no"}, "dicom_seg must be True or False, not 'no'"),
    ],
)
def test_each_bad_value_is_refused_at_construction(values, message):
    with pytest.raises(InputError) as caught:
        OutputOptions(**values)
    assert str(caught.value).startswith(message)
    with pytest.raises(InputError):
        replace(OutputOptions(), **values)  # a changed copy is checked again


def test_plan_checks_mrb_against_the_pipelines_own_list():
    from medrecon.pipeline.registry import shipped_pipelines

    pipe = replace(shipped_pipelines()[0], outputs=("labels", "stats"))
    with pytest.raises(InputError, match="--mrb packs the scene"):
        OutputPlan.from_pipeline(pipe, OutputOptions(mrb=True))
    plan = OutputPlan.from_pipeline(pipe, OutputOptions(mesh_format="ply"))
    assert (plan.outputs, plan.mrb, plan.mesh_format) == (("labels", "stats"), False, "ply")
    scene = OutputPlan.from_pipeline(pipe, OutputOptions(outputs=["scene"], dicom_seg=False))
    assert scene.outputs == ("image", "scene")
    every = OutputPlan.from_pipeline(pipe, OutputOptions(outputs=OUTPUTS, dicom_seg=False))
    assert "dicom_seg" not in every.outputs


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"mesh_format": "fbx"}, "m.json row 2: mesh format 'fbx': choose one of"),
        ({"outputs": "labels;movie"}, "m.json row 2: unknown output(s) ['movie']"),
        ({"outputs": "labels", "mrb": "yes"}, "m.json row 2: --mrb packs the scene"),
        ({"dicom_seg": "maybe"}, "m.json row 2 dicom_seg: 'maybe' is not yes/no"),
    ],
)
def test_a_manifest_rows_bad_option_names_the_row(tmp_path, row, message):
    rows = [{"path": "a", "mesh_format": "obj"}, {"path": "b", **row}]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    with pytest.raises(InputError) as caught:
        read_manifest(tmp_path / "m.json")
    assert str(caught.value).startswith(f"{tmp_path / message}")


def test_a_rows_options_change_a_checked_copy_of_the_cohorts(tmp_path):
    study = Study("P1", tmp_path, "P1", options={"series": "3", "mesh_format": "vtp"})
    base = OutputOptions(dicom_seg=False)
    assert study_output_options(base, study) == OutputOptions(mesh_format="vtp", dicom_seg=False)
    assert study_output_options(base, Study("P2", tmp_path, "P2")) is base
    clash = Study("P3", tmp_path, "P3", options={"outputs": ["labels"]})
    with pytest.raises(InputError, match=r"^study P3: --mrb packs the scene"):
        study_output_options(OutputOptions(mrb=True), clash)
