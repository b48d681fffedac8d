"""Vendor rules (medrecon/io/dicom/{philips,ge,colour}.py) on real and real-derived files.

The Philips enhanced file is real, with dcm2niix's own NIfTI to compare with.
The other cases are copies of the real Philips CT series edited with pydicom
(tests/vendor_synth.py) so that one vendor attribute is what the rule reads;
the expected values are computed from the stored pixels directly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from vendor_synth import (
    colour_series,
    ge_pepolar_series,
    philips_classic_mr,
    philips_dwi_series,
    uih_vframe_grid,
)

import medrecon
from medrecon.errors import MedreconError
from medrecon.io import read, scan
from medrecon.io.convert import convert


@pytest.fixture(scope="module")
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="module")
def ct_source(dicom_dir: Path) -> Path:
    return dicom_dir / "ct-philips-axial"


def _canonical(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array, np.float64), affine))
    return np.asarray(img.dataobj, dtype=np.float64)


# -- Philips precise scaling ---------------------------------------------------------------
PHILIPS_REFS = {
    "T1_M": "Philips_WIP_B0_NS_801_e1.nii",
    "T1_FIELD_MAP": "Philips_WIP_B0_NS_801_e2_fieldmaphz.nii",
}


def _philips_enhanced(dicom_dir: Path, **options) -> dict[str, medrecon.Volume]:
    volumes = medrecon.load_all(dicom_dir / "enhanced-multiframe" / "in" / "Philips", **options)
    return {v.meta.distinguishing["image_type"]: v for v in volumes}


def test_philips_enhanced_precise_values_match_dcm2niix(dicom_dir):
    refs = dicom_dir / "enhanced-multiframe" / "dcm2niix-ref"
    precise = _philips_enhanced(dicom_dir)
    display = _philips_enhanced(dicom_dir, philips_scaling="display")
    facts = {
        "T1_M": (1.27985347985347, 0.0, 8.448640073766e-06),
        "T1_FIELD_MAP": (0.24420024420024, -500.0, 4.095000267028809),
    }
    for image_type, ref_name in PHILIPS_REFS.items():
        ref_img = nib.load(refs / ref_name)
        ref = _canonical(ref_img.get_fdata(dtype=np.float64), ref_img.affine)
        ours = _canonical(precise[image_type].array, precise[image_type].affine)
        shown = _canonical(display[image_type].array, display[image_type].affine)
        # dcm2niix's float32 arithmetic: within 1e-7 of the magnitude's range (2.4e8) and
        # 0.006 Hz on the field map (its slope 1/SS is rounded to float32 as l1 - l0).
        assert np.abs(ours - ref).max() <= 1.2e-5 * np.abs(ref).max(), image_type
        rs, ri, ss = facts[image_type]
        np.testing.assert_allclose(ours, shown / (rs * ss), rtol=1e-6, atol=1e-3)
        vendor = precise[image_type].meta.extra["vendor"]
        assert vendor["PhilipsRescaleSlope"] == rs
        assert vendor["PhilipsRescaleIntercept"] == ri
        assert vendor["PhilipsScaleSlope"] == pytest.approx(ss, rel=1e-9)
        assert vendor["PhilipsScaling"] == "precise"
        assert vendor["UsePhilipsFloatNotDisplayScaling"] == 1
        assert display[image_type].meta.extra["vendor"]["PhilipsScaling"] == "display"
    # The magnitude differs by 1 / (RS x SS) = 92,481: display values are far from the ref.
    ref_img = nib.load(refs / PHILIPS_REFS["T1_M"])
    ref = _canonical(ref_img.get_fdata(dtype=np.float64), ref_img.affine)
    shown = _canonical(display["T1_M"].array, display["T1_M"].affine)
    assert np.abs(shown - ref).max() > 0.99 * np.abs(ref).max()


def test_philips_classic_precise_formula(ct_source, tmp_path):
    rs, ri, ss = 2.5, -10.0, 0.04
    files = philips_classic_mr(
        ct_source, tmp_path / "mr", rescale_slope=rs, rescale_intercept=ri, scale_slope=ss
    )
    volume = medrecon.load(tmp_path / "mr")
    display = medrecon.load(tmp_path / "mr", philips_scaling="display")
    ss32 = float(np.float32(ss))  # FL: the file holds the float32 value
    stored = pydicom.dcmread(files[13]).pixel_array.astype(np.float64)
    expected = (stored * rs + ri) / (rs * ss32)
    np.testing.assert_allclose(volume.array[:, :, 13], expected.T, rtol=1e-6)
    np.testing.assert_array_equal(display.array[:, :, 13], (stored * rs + ri).T.astype(np.float32))
    assert volume.array.dtype == np.float32
    assert volume.meta.extra["vendor"]["PhilipsScaleSlope"] == ss32
    assert any("precise floating-point" in w for w in volume.meta.warnings)


def test_philips_scale_slope_read_from_implicit_vr(ct_source, tmp_path):
    explicit = philips_classic_mr(
        ct_source, tmp_path / "e", rescale_slope=1.5, rescale_intercept=0, scale_slope=0.25
    )
    implicit = philips_classic_mr(
        ct_source,
        tmp_path / "i",
        rescale_slope=1.5,
        rescale_intercept=0,
        scale_slope=0.25,
        implicit=True,
    )
    assert str(pydicom.dcmread(implicit[0]).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2"
    a, b = medrecon.load(tmp_path / "e"), medrecon.load(tmp_path / "i")
    assert b.meta.extra["vendor"]["PhilipsScaleSlope"] == 0.25
    np.testing.assert_array_equal(a.array, b.array)
    assert explicit


def test_non_philips_and_philips_ct_are_unchanged(dicom_dir):
    ct = medrecon.load(dicom_dir / "ct-philips-axial")  # Philips CT: no scale slope
    assert "vendor" not in ct.meta.extra
    assert ct.array.dtype == np.int16


def test_a_philips_ct_carrying_a_scale_slope_keeps_its_hu(ct_source, tmp_path):
    """The precise-scaling rule is MR's: a CT with the private tag keeps RescaleSlope HU."""
    philips_classic_mr(
        ct_source, tmp_path / "ct", rescale_slope=1.0, rescale_intercept=-1024, scale_slope=0.5
    )
    for path in (tmp_path / "ct").iterdir():
        ds = pydicom.dcmread(path)
        ds.Modality = "CT"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.save_as(path, enforce_file_format=True)
    volume = medrecon.load(tmp_path / "ct")
    original = medrecon.load(ct_source)
    np.testing.assert_array_equal(volume.array, original.array)
    assert "vendor" not in volume.meta.extra


def test_cli_vendor_choices_are_the_loaders():
    import argparse

    from medrecon.cli.convert import add_vendor_options
    from medrecon.io.dicom.philips import DERIVED_DWI, PHILIPS_SCALING

    p = argparse.ArgumentParser()
    add_vendor_options(p)
    choices = {a.dest: tuple(a.choices) for a in p._actions if a.choices}
    assert choices == {"philips_scaling": PHILIPS_SCALING, "derived_dwi": DERIVED_DWI}


def test_info_cli_names_the_scaling(dicom_dir, capsys):
    from medrecon.cli.main import main

    src = str(dicom_dir / "enhanced-multiframe" / "in" / "Philips")
    assert main(["info", src]) == 0
    assert capsys.readouterr().out.count("Philips precise floating-point values") == 2
    assert main(["info", src, "--philips-scaling", "display"]) == 0
    assert capsys.readouterr().out.count("Philips display values") == 2


def test_convert_sidecar_and_cli_option(dicom_dir, tmp_path):
    from medrecon.cli.main import main

    src = dicom_dir / "enhanced-multiframe" / "in" / "Philips"
    assert (
        main(["convert", str(src), "-o", str(tmp_path / "d"), "--philips-scaling", "display"]) == 0
    )
    convert(src, tmp_path / "p")
    for mode in ("d", "p"):
        sidecars = sorted((tmp_path / mode).glob("*T1_M*.json"))
        assert len(sidecars) == 1
        meta = json.loads(sidecars[0].read_text())
        assert meta["PhilipsScaling"] == {"d": "display", "p": "precise"}[mode]
        assert meta["PhilipsScaleSlope"] == pytest.approx(8.448640073766e-06)
        assert meta["PhilipsRescaleSlope"] == pytest.approx(1.27985347985347)
        data = nib.load(sidecars[0].with_name(sidecars[0].name[:-5] + ".nii.gz")).get_fdata()
        assert data.max() > 1e8 if mode == "p" else data.max() < 5000
    with pytest.raises(ValueError, match="philips_scaling"):
        read(src, philips_scaling="exact")


# -- Philips derived diffusion (trace/ADC) frames -------------------------------------------
DWI = [
    {"b": 0, "gradient": (0, 0, 0)},
    {"b": 1000, "gradient": (1, 0, 0)},
    {"b": 1000, "gradient": (0, 1, 0)},
    {"b": 1000, "gradient": (0, 0, 1)},
    {"b": 1000, "gradient": (0, 0, 0)},  # the derived trace: b > 0, zero gradient
]


def _frame_values(volume, stored, v):
    return np.stack([(s.astype(np.float64) + 100 * v).T for s in stored], axis=-1)


def test_derived_trace_dropped_by_default(ct_source, tmp_path):
    _, stored = philips_dwi_series(ct_source, tmp_path / "dwi", DWI)
    volume = medrecon.load(tmp_path / "dwi")
    assert volume.shape == (512, 512, 6, 4)
    for t in range(4):  # the four acquired volumes, in order; the trace (v=4) is gone
        np.testing.assert_array_equal(volume.array[..., t], _frame_values(volume, stored, t) - 1024)
    assert any("derived isotropic" in w and "removed" in w for w in volume.meta.warnings)
    assert volume.meta.extra["vendor"]["DerivedDiffusionVolumes"] == "removed"
    assert len(volume.meta.source_files) == 24
    assert scan(tmp_path / "dwi").series[0].shape == (512, 512, 6, 4)
    skipped = read(tmp_path / "dwi").skipped
    assert sorted(Path(s.path).name for s in skipped) == [f"v4_s{k}.dcm" for k in range(6)]
    assert all("derived isotropic" in s.reason for s in skipped)


def test_derived_trace_in_a_stack_of_its_own_is_dropped(ct_source, tmp_path):
    # A different ImageType value 3 puts the trace in its own stack; the series decides.
    specs = [{**s, "image_type": ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE")} for s in DWI]
    specs[4]["image_type"] = ("DERIVED", "PRIMARY", "TRACEW", "M", "SE")
    philips_dwi_series(ct_source, tmp_path / "dwi", specs)
    (volume,) = medrecon.load_all(tmp_path / "dwi")
    assert volume.shape == (512, 512, 6, 4)
    assert any("derived isotropic" in w for w in volume.meta.warnings)
    dwi, trace = medrecon.load_all(tmp_path / "dwi", derived_dwi="split")
    assert dwi.shape == (512, 512, 6, 4) and trace.shape == (512, 512, 6)
    assert trace.meta.distinguishing == {"image_type": "TRACEW", "derived": "isotropic"}
    assert len(medrecon.load_all(tmp_path / "dwi", derived_dwi="keep")) == 2


def test_derived_trace_split_or_kept(ct_source, tmp_path):
    _, stored = philips_dwi_series(ct_source, tmp_path / "dwi", DWI)
    dwi, trace = medrecon.load_all(tmp_path / "dwi", derived_dwi="split")
    assert dwi.shape == (512, 512, 6, 4) and trace.shape == (512, 512, 6)
    assert trace.meta.distinguishing == {"derived": "isotropic"}
    np.testing.assert_array_equal(trace.array, _frame_values(trace, stored, 4) - 1024)
    kept = medrecon.load(tmp_path / "dwi", derived_dwi="keep")
    assert kept.shape == (512, 512, 6, 5)
    assert kept.meta.extra["vendor"]["DerivedDiffusionVolumes"] == "kept"


def test_isotropic_directionality_marks_derived(ct_source, tmp_path):
    specs = [dict(s) for s in DWI]
    specs[4] = {"directionality": "ISOTROPIC"}  # no b-value or gradient: the tag alone
    philips_dwi_series(ct_source, tmp_path / "dwi", specs)
    assert medrecon.load(tmp_path / "dwi").shape == (512, 512, 6, 4)


def test_b0_plus_trace_pair_is_kept(ct_source, tmp_path):
    philips_dwi_series(ct_source, tmp_path / "pair", [DWI[0], DWI[4]])
    volume = medrecon.load(tmp_path / "pair")
    assert volume.shape == (512, 512, 6, 2)  # dcm2niix keeps a b=0 + trace pair
    assert "vendor" not in volume.meta.extra


# -- GE epi_pepolar ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [1, 2, 3])
def test_ge_pepolar_rows_flipped_back_and_split(ct_source, tmp_path, mode):
    reversed_volumes, stored = ge_pepolar_series(ct_source, tmp_path / "ge", mode=mode)
    volumes = medrecon.load_all(tmp_path / "ge")
    truth = [
        np.stack([(s.astype(np.float64) + 50 * v).T - 1024 for s in stored], -1) for v in range(4)
    ]
    if mode == 1:
        assert len(volumes) == 1
        parts = {"reversed": (volumes[0], [0, 1, 2, 3])}
    else:
        assert [v.meta.distinguishing["phase_encoding_polarity"] for v in volumes] == [
            "forward",
            "reversed",
        ]
        rev = [v for v in range(4) if reversed_volumes[v]]
        fwd = [v for v in range(4) if not reversed_volumes[v]]
        parts = {"forward": (volumes[0], fwd), "reversed": (volumes[1], rev)}
    for polarity, (volume, which) in parts.items():
        assert volume.shape == (512, 512, 5, len(which))
        for t, v in enumerate(which):
            np.testing.assert_array_equal(volume.array[..., t], truth[v])
        facts = volume.meta.extra["vendor"]
        assert facts["GEPepolarMode"] == mode and facts["PhaseEncodingPolarity"] == polarity
        assert facts.get("RowsFlippedBack", 0) == (5 * len(which) if polarity == "reversed" else 0)


# -- colour ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("photometric", "planar", "rle"),
    [("RGB", 0, False), ("RGB", 1, False), ("YBR_FULL", 0, False), ("RGB", 0, True)],
)
def test_colour_series_loads_as_rgb(ct_source, tmp_path, photometric, planar, rle):
    rgbs = colour_series(ct_source, tmp_path / "c", photometric=photometric, planar=planar, rle=rle)
    volume = medrecon.load(tmp_path / "c")
    grey = medrecon.load(ct_source)
    assert volume.shape == (512, 512, 6, 3) and volume.array.dtype == np.uint8
    assert volume.meta.frame_axis == "rgb"
    np.testing.assert_allclose(volume.affine[:, :3], grey.affine[:, :3])
    expected = np.stack(rgbs, 0).transpose(2, 1, 0, 3)
    # YBR_FULL -> RGB is a rounded colour transform: within 1 level; RGB is exact.
    tolerance = 1 if photometric == "YBR_FULL" else 0
    assert np.abs(volume.array.astype(int) - expected).max() <= tolerance
    assert scan(tmp_path / "c").series[0].shape == (512, 512, 6, 3)


def test_colour_written_as_rgb24_and_read_back(ct_source, tmp_path):
    colour_series(ct_source, tmp_path / "c")
    volume = medrecon.load(tmp_path / "c")
    (path,) = convert(tmp_path / "c", tmp_path / "out")
    img = nib.load(path)
    assert img.header["datatype"] == 128  # NIFTI_TYPE_RGB24, as dcm2niix writes colour
    back = medrecon.load(path)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.meta.frame_axis == "rgb"
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)


def test_run_refuses_colour(ct_source, tmp_path):
    from medrecon.study.runner import _load_series

    colour_series(ct_source, tmp_path / "c")
    with pytest.raises(MedreconError, match="colour"):  # the volume-to-segment step of a run
        _load_series(tmp_path / "c", "CT", None, None, "study c", [])
    with pytest.raises(MedreconError, match="colour"):  # when chosen explicitly too
        _load_series(tmp_path / "c", "CT", None, 201, "study c", [])


# -- UIH VFRAME grids ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{}, {"descending": True}, {"positions": False}, {"top_position": False}],
    ids=["asc", "desc", "no-item-positions", "no-file-position"],
)
def test_uih_vframe_grid_matches_the_real_slices(ct_source, tmp_path, options):
    used = uih_vframe_grid(ct_source, tmp_path / "grid", n=5, **options)  # 2 x 3 grid, 1 empty
    (tmp_path / "ref").mkdir()
    for path in used:
        shutil.copyfile(path, tmp_path / "ref" / path.name)
    volume = medrecon.load(tmp_path / "grid")
    reference = medrecon.load(tmp_path / "ref")  # the same 5 slices as classic files
    assert volume.shape == reference.shape == (512, 512, 5)
    np.testing.assert_array_equal(volume.array, reference.array)
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-6)
    stepped = any("without per-slice positions" in w for w in volume.meta.warnings)
    assert stepped == (options == {"positions": False})
    assert scan(tmp_path / "grid").series[0].shape == (512, 512, 5)


def test_uih_vframe_real_dcm_qa_uih_matches_dcm2niix(dicom_dir):
    """Real UIH DTI grids (dcm_qa_uih, BSD-2) when copied to dicom/uih-vframe/{in,dcm2niix-ref}."""
    root = dicom_dir / "uih-vframe"
    if not root.is_dir():
        pytest.skip(f"{root} not found (copy dcm_qa_uih's In/ and Ref/ there to run this check)")
    loaded = [
        medrecon.load(folder)
        for folder in sorted((root / "in").rglob("*SaveBySlc*"))
        if folder.is_dir()
    ]
    refs = sorted((root / "dcm2niix-ref").glob("dti_*.nii*"))
    assert loaded and refs
    for ref in refs:  # each of dcm2niix's volumes is one of ours: same shape, data, affine
        img = nib.load(ref)
        theirs = _canonical(img.get_fdata(dtype=np.float64), img.affine)
        canon = nib.as_closest_canonical(img).affine
        assert any(
            _canonical(v.array, v.affine).shape == theirs.shape
            and np.array_equal(_canonical(v.array, v.affine), theirs)
            and np.allclose(
                nib.as_closest_canonical(
                    nib.Nifti1Image(np.zeros(v.shape, np.uint8), v.affine)
                ).affine,
                canon,
                atol=1e-4,
            )
            for v in loaded
        ), ref.name


@pytest.mark.parametrize(
    ("text", "vendor"),
    [
        ("GE MEDICAL SYSTEMS", "GE"),
        ("GE HEALTHCARE", "GE"),
        ("Philips Medical Systems", "PHILIPS"),
        ("UIH", "UIH"),
        ("XYZ IMAGE SYSTEMS", "XYZ IMAGE SYSTEMS"),  # 'GE' inside a word is not GE
    ],
)
def test_manufacturer_names(text, vendor):
    from pydicom.dataset import Dataset

    from medrecon.io.dicom.vendor import manufacturer_of

    ds = Dataset()
    ds.Manufacturer = text
    assert manufacturer_of(ds) == vendor
