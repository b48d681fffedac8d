"""Header fuzzer: real DICOM files with header elements removed, blanked or set to nonsense.

Each case copies a small real series from ``../shared/data/dicom`` (4 CT slices, two
Siemens mosaics, two enhanced MR files, a Philips enhanced file, single mosaics in
compressed transfer syntaxes), edits 1-4 elements of one file or of every file (removed; blanked; a
well-formed but wrong value such as Rows 0 or BitsAllocated 7; or raw junk bytes),
and loads the folder. Every outcome must be a loaded volume (with a finite, invertible
affine) or a ``MedreconError``; anything else fails the test with the case that
caused it. Cases are seeded: a failure names its seed and edits, so it reproduces.
"""

from __future__ import annotations

import copy
import logging
import random
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from medrecon.errors import MedreconError
from medrecon.io import read

SEED = 20261202
N_CASES = 300
N_CASES_SLOW = 3000

#: (name, folder under dicom/, file names or None for all, weight)
SOURCES = (
    ("ct", "ct-philips-axial", ("I100", "I110", "I120", "I130"), 3),
    ("mosaic", "mr-orientation/in/ax/axasc35", None, 2),
    ("enhanced", "enhanced-multiframe/in/Siemens/XA10", ("6_1.dcm", "6_2.dcm"), 2),
    ("philips", "enhanced-multiframe/in/Philips", None, 1),
    ("implicit", "transfer-syntaxes/in", ("2.dcm",), 1),
    ("rle", "transfer-syntaxes/in", ("4.dcm",), 1),
    ("jpegls", "transfer-syntaxes/in", ("7.dcm",), 1),
    ("j2k", "transfer-syntaxes/in", ("9.dcm",), 1),
)

#: Elements the loader reads: most edits hit one of these.
TARGETS = (
    "SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID",
    "FrameOfReferenceUID", "Modality", "SeriesNumber", "SeriesDescription", "ImageType",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
    "SpacingBetweenSlices", "RescaleSlope", "RescaleIntercept", "InstanceNumber",
    "AcquisitionNumber", "AcquisitionTime", "ContentTime", "TemporalPositionIdentifier",
    "TriggerTime", "EchoNumbers", "EchoTime", "GantryDetectorTilt", "PixelData",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
    "PixelValueTransformationSequence", "FrameContentSequence", "MRImageFrameTypeSequence",
    "SeriesTime", "SeriesDate", "StudyDate", "StudyTime", "PatientID",
)  # fmt: skip
PRIVATE_TARGETS = ((0x0019, 0x100A), (0x0029, 0x1010), (0x0029, 0x1020))
META_TARGETS = ("TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")

_JUNK_TEXT = (
    "", " ", "abc", "nan", "-inf", "1e400", "0", "-1", "99999999999", "1.5.x", "\\\\\\",
    "1\\2", "1\\2\\3\\4\\5\\6\\7", "0\\0\\0\\0\\0\\0", "0\\0", "-0.0\\-0.0", "é\u00ff", "\x00\x01",
    "1.2.840.10008.5.1.4.1.1.7", "LOCALIZER", "MOSAIC", "A" * 300,
)  # fmt: skip


@dataclass
class Outcome:
    loaded: int = 0
    errors: int = 0
    unwritable: int = 0
    failures: list[str] | None = None


def _nonsense(rng: random.Random, elem: DataElement) -> DataElement:
    """``elem`` with a value of the wrong kind, as raw bytes (VR OB: pydicom keeps them)."""
    if elem.VR == "SQ" and rng.random() < 0.6:
        items = [] if rng.random() < 0.5 else [Dataset()]
        return DataElement(elem.tag, "SQ", Sequence(items))
    kind = rng.random()
    if kind < 0.5:
        payload = rng.choice(_JUNK_TEXT).encode("utf-8")
    elif kind < 0.8:
        fmt = rng.choice(("<H", "<h", "<I", "<d", "<f", "<HH", "<dd"))
        number = rng.choice((0, 1, 3, 255, 65535, -1, 2**31 - 1, float("nan"), 1e308))
        try:
            payload = struct.pack(fmt, *([number] * (len(fmt) - 1)))
        except (struct.error, OverflowError):
            payload = struct.pack(fmt, *([0] * (len(fmt) - 1)))
    else:
        payload = bytes(rng.randrange(256) for _ in range(rng.choice((1, 3, 8, 33))))
    if len(payload) % 2:
        payload += b" "
    return DataElement(elem.tag, "OB", payload)


_WRONG_NUMBERS = (0, 1, 2, 7, 17, 255, 4096, 32767, 65535)
_WRONG_FLOATS = (0.0, -1.0, 1e-9, 1e9, -1e9, 0.5)


def _wrong(rng: random.Random, elem: DataElement) -> DataElement:
    """``elem`` with a well-formed value of its own type that is wrong (Rows 0, BitsAllocated
    7, a spacing of 1e9...); falls back to raw nonsense for types without such a value."""
    vm = max(1, len(elem.value)) if isinstance(elem.value, (list, tuple)) else 1
    vm = rng.choice((vm, vm, 1, vm + 1))
    if elem.VR in ("US", "SS", "UL", "SL", "IS"):
        values = [rng.choice(_WRONG_NUMBERS) for _ in range(vm)]
        if elem.VR in ("SS", "SL", "IS") and rng.random() < 0.3:
            values = [-v for v in values]
    elif elem.VR in ("DS", "FD", "FL"):
        values = [rng.choice(_WRONG_FLOATS) for _ in range(vm)]
    elif elem.VR in ("CS", "LO", "SH", "UI", "LT", "ST", "PN", "DA", "TM", "DT"):
        words = ("ORIGINAL", "LOCALIZER", "MOSAIC", "1.2.3", "", "MONOCHROME1", "RGB", "X" * 70)
        values = [rng.choice(words) for _ in range(vm)]
    else:
        return _nonsense(rng, elem)
    try:
        return DataElement(elem.tag, elem.VR, values[0] if len(values) == 1 else values)
    except Exception:
        return _nonsense(rng, elem)


def _containers(ds: Dataset) -> list[Dataset]:
    """``ds`` and every dataset nested in its sequences (not the pixel-data fragments)."""
    out = [ds]
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out.extend(_containers(item))
    return out


def _pick(rng: random.Random, ds: Dataset) -> tuple[str, int] | None:
    """Where ("meta", "top" or "nested") and which tag to edit: usually an element the
    loader reads, else any element of the file."""
    roll = rng.random()
    if roll < 0.08:
        return "meta", Tag(rng.choice(META_TARGETS))
    if roll < 0.13:
        return "top", Tag(rng.choice(PRIVATE_TARGETS))
    nested = rng.random() < 0.5
    if roll < 0.75:
        return ("nested" if nested else "top"), Tag(rng.choice(TARGETS))
    containers = _containers(ds)
    holder = rng.choice(containers[1:]) if nested and len(containers) > 1 else ds
    tags = [t for t in holder.keys() if t != 0x7FE00010]  # noqa: SIM118 (a Dataset yields elements)
    return (("nested" if holder is not ds else "top"), rng.choice(tags)) if tags else None


def _holder(rng: random.Random, ds: Dataset, where: str, tag: int) -> Dataset:
    if where == "meta":
        return ds.file_meta
    holders = [c for c in _containers(ds)[1:] if tag in c] if where == "nested" else []
    return rng.choice(holders) if holders else ds


def _edit(rng: random.Random, datasets: list[Dataset]) -> list[str]:
    """Apply 1-4 random edits, each to one file or to every file; returns what was done."""
    done = []
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        everywhere = rng.random() < 0.4
        targets = datasets if everywhere else [rng.choice(datasets)]
        picked = _pick(rng, targets[0])
        if picked is None:
            continue
        where, tag = picked
        op = rng.choice(("remove", "blank", "nonsense", "wrong", "wrong"))
        value_seed = rng.randrange(2**32)  # the same nonsense in every file
        for ds in targets:
            holder = _holder(rng, ds, where, tag)
            if op == "remove":
                if tag in holder:
                    del holder[tag]
            elif tag in holder:
                elem = holder[tag]
                if op == "blank":
                    empty = Sequence([]) if elem.VR == "SQ" else None
                    holder[tag] = DataElement(tag, elem.VR, empty)
                elif op == "wrong":
                    holder[tag] = _wrong(random.Random(value_seed), elem)
                else:
                    holder[tag] = _nonsense(random.Random(value_seed), elem)
            elif op in ("nonsense", "wrong"):
                junk = random.Random(value_seed).choice(_JUNK_TEXT).encode()
                holder[tag] = DataElement(tag, "OB", junk + b" " * (len(junk) % 2))
        scope = "all files" if everywhere else Path(str(targets[0].filename)).name
        name = pydicom.datadict.keyword_for_tag(tag) or str(Tag(tag))
        done.append(f"{op} {where} {name} in {scope}")
    return done


def _save(ds: Dataset, path: Path) -> bool:
    try:
        ds.save_as(path, enforce_file_format=False)
        return True
    except Exception:
        pass
    try:  # a mangled transfer syntax: write explicit little endian bytes anyway
        ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=False)
        return True
    except Exception:
        return False


def _check_volume(volume) -> str | None:
    aff = np.asarray(volume.affine, dtype=float)
    if volume.array.ndim not in (3, 4) or volume.array.size == 0:
        return f"bad array shape {volume.array.shape}"
    if not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-9:
        return f"degenerate affine {aff.tolist()}"
    return None


@pytest.fixture(scope="module")
def originals(shared_data: Path) -> dict[str, list[Dataset]]:
    out = {}
    for name, folder, names, _ in SOURCES:
        base = shared_data / "dicom" / folder
        files = (
            [base / n for n in names]
            if names
            else sorted(p for p in base.iterdir() if p.is_file() and not p.name.endswith(".nii"))
        )
        out[name] = [pydicom.dcmread(f) for f in files]
    return out


def _run(originals, tmp_path: Path, n_cases: int, seed: int) -> Outcome:
    rng = random.Random(seed)
    names = [s[0] for s in SOURCES]
    weights = [s[3] for s in SOURCES]
    outcome = Outcome(failures=[])
    logging.disable(logging.WARNING)  # each loaded volume logs its warnings
    try:
        for case in range(n_cases):
            case_seed = rng.randrange(2**32)
            crng = random.Random(case_seed)
            source = crng.choices(names, weights)[0]
            datasets = [copy.deepcopy(ds) for ds in originals[source]]
            folder = tmp_path / f"case{case:04d}"
            folder.mkdir()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                edits = _edit(crng, datasets)
                if not all(_save(ds, folder / f"{i}.dcm") for i, ds in enumerate(datasets)):
                    outcome.unwritable += 1
                    continue
                try:
                    result = read(folder, workers=1)
                except MedreconError:
                    outcome.errors += 1
                    continue
                except Exception as exc:  # the bug this test is for
                    outcome.failures.append(
                        f"case {case} seed {case_seed} {source} {edits}: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    continue
            bad = [m for v in result.volumes if (m := _check_volume(v))]
            if bad:
                outcome.failures.append(f"case {case} seed {case_seed} {source} {edits}: {bad}")
            else:
                outcome.loaded += 1
            for f in folder.iterdir():
                f.unlink()
    finally:
        logging.disable(logging.NOTSET)
    return outcome


def _report(outcome: Outcome, n_cases: int, seconds: float) -> None:
    logging.getLogger(__name__).info(
        "header fuzzer: %d cases in %.1f s: %d loaded, %d MedreconError, %d not writable "
        "by pydicom, %d other outcomes",
        n_cases,
        seconds,
        outcome.loaded,
        outcome.errors,
        outcome.unwritable,
        len(outcome.failures),
    )
    assert not outcome.failures, "\n".join(outcome.failures[:20])


def test_header_fuzzer(originals, tmp_path):
    t0 = time.perf_counter()
    outcome = _run(originals, tmp_path, N_CASES, SEED)
    _report(outcome, N_CASES, time.perf_counter() - t0)
    # The fuzzer must exercise both outcomes, or it tests nothing.
    assert outcome.loaded > N_CASES // 5 and outcome.errors > N_CASES // 20


@pytest.mark.slow
def test_header_fuzzer_many(originals, tmp_path):
    t0 = time.perf_counter()
    outcome = _run(originals, tmp_path, N_CASES_SLOW, SEED + 1)
    _report(outcome, N_CASES_SLOW, time.perf_counter() - t0)


# -- the bugs the fuzzer found, one by one ----------------------------------------------------
@pytest.mark.parametrize(
    ("keyword", "element", "reason"),
    [
        ("SamplesPerPixel", ("OB", b"LOCALIZER "), "incomplete image header"),
        ("PixelSpacing", ("DS", [0.0, 0.0]), "invalid PixelSpacing"),
        ("ImageOrientationPatient", ("DS", [1, 0, 0, 1, 0, 0]), "invalid ImageOrientationPatient"),
        ("ImageOrientationPatient", ("DS", [0, 0, 0, 0, 0, 0]), "invalid ImageOrientationPatient"),
        ("Columns", ("US", 0), "invalid image size"),
    ],
    ids=["samples-junk", "zero-spacing", "parallel-cosines", "zero-cosines", "zero-columns"],
)
def test_found_bugs_are_skip_reasons(originals, tmp_path, keyword, element, reason):
    datasets = [copy.deepcopy(ds) for ds in originals["ct"]]
    bad = datasets[1]
    bad[keyword] = DataElement(Tag(keyword), *element)
    for i, ds in enumerate(datasets):
        ds.save_as(tmp_path / f"{i}.dcm", enforce_file_format=False)
    result = read(tmp_path, workers=1)
    (volume,) = result.volumes  # the other three slices still load
    assert len(volume.meta.source_files) == 3
    ((path, why),) = [(s.path, s.reason) for s in result.skipped]
    assert Path(path).name == "1.dcm" and reason in why
