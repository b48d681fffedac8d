"""Pure logic of the out-of-domain checks: volume ranges, label edges, body-part terms,
and the pipeline file keys that declare them."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.errors import OutOfDomainError, PipelineError
from medrecon.labels import Label
from medrecon.labels.plausibility import edge_labels, label_volumes, volume_check, volume_warnings
from medrecon.pipeline.domain import DEFINED_BODY_PARTS, check_domain, normalise
from medrecon.pipeline.parse import parse_pipeline
from medrecon.volume import Volume, VolumeMeta


def test_volume_check_inside_below_above_and_at_the_edge():
    assert volume_check("liver", 1500.0, (50, 5000), at_edge=False) is None
    assert volume_check("liver", 1500.0, None, at_edge=False) is None
    low = volume_check("liver", 2.0, (50, 5000), at_edge=False)
    assert low == (
        "liver: 2.0 mL is below the 50-5000 mL this pipeline expects of a whole liver; "
        "check it in the preview or in Slicer"
    )
    cut = volume_check("kidney_left", 4.5, (10, 600), at_edge=True)
    assert "below the 10-600 mL" in cut and "may be cut by the field of view" in cut
    high = volume_check("urinary_bladder", 1500.0, (5, 1200), at_edge=True)
    assert "above the 5-1200 mL" in high and "whole urinary bladder" in high
    assert "cut by the field of view" not in high  # a cut organ is smaller, never larger


def test_label_volumes_and_edges_on_a_known_array():
    a = np.zeros((10, 10, 10), np.uint8)
    a[2:5, 2:5, 2:5] = 1  # 27 voxels inside
    a[0:2, 5:7, 5:7] = 2  # 8 voxels on the i=0 face
    a[4:6, 4:6, 8:10] = 3  # 8 voxels on the k=-1 face
    assert label_volumes(a, 0.5) == {1: 13.5, 2: 4.0, 3: 4.0}
    assert edge_labels(a) == {2, 3}
    labels = [
        Label(1, "a", (1, 1, 1), expected_ml=(20, 30)),
        Label(2, "b", (1, 1, 1), expected_ml=(5, 10)),
        Label(3, "c", (1, 1, 1)),  # no range declared: never flagged
        Label(4, "d", (1, 1, 1), expected_ml=(1, 2)),  # absent: not flagged
    ]
    warnings = volume_warnings(a, 0.5, labels)
    assert len(warnings) == 2
    assert warnings[0].startswith("a: 13.5 mL is below the 20-30 mL") and "preview" in warnings[0]
    assert warnings[1].startswith("b: 4.0 mL is below the 5-10 mL") and "cut" in warnings[1]


def test_body_part_terms_normalise():
    assert normalise("Chest / Abdomen") == "CHESTABDOMEN"
    assert normalise("abd_pel") == "ABDPEL"
    assert {"HEAD", "ABDOMEN", "CHESTABDPELVIS", "WHOLEBODY", "KNEE"} <= DEFINED_BODY_PARTS
    assert "ABDPEL" not in DEFINED_BODY_PARTS


def _raw(**label_extra):
    return {
        "name": "t",
        "modality": "CT",
        "labels": {1: {"name": "liver", "color": [1, 2, 3], **label_extra}},
        "preprocess": {"intensity": {"mode": "ct_window", "window": [-200, 300]}},
        "network": {
            "name": "UNet",
            "args": {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 2,
                "channels": [4, 8],
                "strides": [2],
            },
        },
    }


def _pipe(**top):
    return parse_pipeline({**_raw(expected_ml=[50, 5000]), **top})


def test_pipeline_file_keys_expected_ml_and_body_parts():
    pipe = _pipe(body_parts=["abdomen", "Chest"])
    assert pipe.labels[0].expected_ml == (50.0, 5000.0)
    assert pipe.body_parts == ("ABDOMEN", "CHEST")
    assert parse_pipeline(_raw()).labels[0].expected_ml is None
    with pytest.raises(PipelineError, match=r"labels\.1\.expected_ml.*min < max"):
        parse_pipeline(_raw(expected_ml=[50, 10]))
    with pytest.raises(PipelineError, match="'body_parts': must be a list"):
        _pipe(body_parts="ABDOMEN")


def _ct_volume(modality="CT"):
    rng = np.random.default_rng(0)
    array = rng.normal(40, 20, (20, 20, 10)).astype(np.float32)
    array[:3] = -1000.0  # air around the body: 15 % of the voxels
    return Volume(array, np.eye(4), VolumeMeta(modality=modality))


def test_check_domain_modality_header_and_inferred():
    pipe = _pipe(body_parts=["ABDOMEN"])
    ok = check_domain(_ct_volume(), pipe, where="s")
    assert ok.modality == "CT" and ok.modality_source == "modality from the input's header"
    inferred = check_domain(_ct_volume(modality=""), pipe, where="s")
    assert inferred.modality_source.startswith("modality inferred from its intensities: 15.0%")
    with pytest.raises(OutOfDomainError, match=r"s: the study is MR \(modality from the input"):
        check_domain(_ct_volume(modality="MR"), pipe, where="s")
    forced = check_domain(_ct_volume(modality="MR"), pipe, where="s", force=True)
    assert len(forced.warnings) == 1 and "segmented anyway (--force)" in forced.warnings[0]


def test_check_domain_body_part_defined_terms_only():
    pipe = _pipe(body_parts=["ABDOMEN", "CHESTABDOMEN"])
    vol = _ct_volume()
    assert check_domain(vol, pipe, where="s", body_part="Chest/Abdomen").warnings == ()
    assert check_domain(vol, pipe, where="s", body_part="ABD_PEL").warnings == ()  # free text
    with pytest.raises(OutOfDomainError, match=r"body part is KNEE .* made for ABDOMEN, CHESTAB"):
        check_domain(vol, pipe, where="s", body_part="KNEE")
    assert check_domain(_ct_volume(), _pipe(), where="s", body_part="KNEE").warnings == ()
