"""Series choice for a pipeline: modality, 3D, enough slices, axial, most voxels."""

from __future__ import annotations

import pytest

from medrecon.errors import InputError, NoImageError
from medrecon.io.report import SeriesSummary
from medrecon.study.selection import choose_series


def _series(number, modality="CT", shape=(512, 512, 100), orientation="axial", thick=1.0):
    return SeriesSummary(
        series_uid=f"1.2.3.{number}",
        series_number=number,
        description=f"series {number}",
        modality=modality,
        shape=shape,
        spacing=(0.7, 0.7, thick),
        n_slices=shape[2],
        n_files=shape[2],
        orientation=orientation,
    )


def test_largest_axial_ct_is_chosen():
    study = [
        _series(1, shape=(512, 512, 3)),  # too few slices
        _series(2, shape=(512, 512, 60), thick=5.0),
        _series(3, shape=(512, 512, 300)),
        _series(4, shape=(512, 512, 400), orientation="coronal"),
        _series(5, modality="MR", shape=(512, 512, 500)),
        _series(6, shape=(512, 512, 300, 4)),  # 4D
    ]
    choice = choose_series(study, modality="CT")
    assert choice.index == 2
    assert "largest axial CT" in choice.reason


def test_ties_prefer_thinner_slices_and_axial_over_other_planes():
    study = [_series(1, thick=2.0), _series(2, thick=1.0)]
    assert choose_series(study, modality="CT").index == 1
    study = [_series(1, orientation="sagittal", shape=(512, 512, 900)), _series(2)]
    assert choose_series(study, modality="CT").index == 1
    # A lone coronal CT is still better than nothing.
    assert choose_series([_series(7, orientation="coronal")], modality="CT").index == 0


def test_series_option_picks_by_number_or_uid():
    study = [_series(1), _series(2, shape=(512, 512, 20))]
    assert choose_series(study, modality="CT", series="2").index == 1
    assert choose_series(study, modality="CT", series="1.2.3.2").index == 1
    assert choose_series(study, modality="CT", series=2).reason == "chosen with --series"


def test_no_suitable_series_names_each_candidate_and_why():
    study = [_series(1, modality="MR"), _series(2, shape=(512, 512, 2))]
    with pytest.raises(NoImageError) as err:
        choose_series(study, modality="CT", where="/data/study7")
    text = str(err.value)
    assert "/data/study7" in text
    assert "modality MR, pipeline wants CT" in text
    assert "only 2 slice(s)" in text
    assert "at least 8 slices" in text and "medrecon info" in text
    with pytest.raises(NoImageError, match="Use a pipeline made for MR/PT images"):
        choose_series([_series(1, modality="MR"), _series(2, modality="PT")], modality="CT")


def test_unknown_series_lists_what_was_found():
    with pytest.raises(NoImageError, match=r"no series '9'.*#1 'series 1' CT axial 512x512x100"):
        choose_series([_series(1)], modality="CT", series="9")


def test_modality_none_accepts_any():
    assert choose_series([_series(1, modality="MR")], modality=None).index == 0


def test_auto_ranks_ct_and_mr_alike_and_refuses_modalities_without_a_pipeline():
    shipped = ("CT", "MR")
    study = [
        _series(1, modality="PT", shape=(512, 512, 900)),  # no pipeline: never chosen
        _series(2, modality="CT", shape=(512, 512, 100)),
        _series(3, modality="MR", shape=(512, 512, 200)),
    ]
    choice = choose_series(study, modality=None, modalities=shipped)
    assert choice.index == 2 and "largest axial MR series of 2 suitable" in choice.reason
    assert choose_series(study[:2], modality=None, modalities=shipped).index == 1
    # A series with no modality (or DICOM's "OT") stays a candidate: intensities decide.
    assert choose_series([_series(4, modality="OT")], modality=None, modalities=shipped).index == 0
    # An explicit pipeline keeps filtering on its own modality, whatever is shipped.
    assert choose_series(study, modality="CT").index == 1


def test_auto_study_with_no_shipped_modality_is_an_input_error():
    study = [_series(1, modality="PT"), _series(2, modality="US")]
    with pytest.raises(InputError) as err:
        choose_series(study, modality=None, modalities=("CT", "MR"), where="/data/pet1")
    text = str(err.value)
    assert "/data/pet1" in text and "PT/US images" in text
    assert "modality PT, no shipped pipeline for it" in text
    assert "made for CT, MR" in text and "--model" in text
    # A PT series beside a CT scout is a study without a usable series, as before.
    study = [_series(1, modality="PT"), _series(2, shape=(512, 512, 2))]
    with pytest.raises(NoImageError, match="only 2 slice"):
        choose_series(study, modality=None, modalities=("CT", "MR"))
