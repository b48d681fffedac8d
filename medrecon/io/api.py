"""Entry points: ``load``, ``load_all``, ``read`` and ``scan`` for any supported input."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from medrecon.errors import AmbiguousInputError, InputError, MedreconError, NoImageError
from medrecon.io.archive import member_names
from medrecon.io.report import ScanReport, SeriesSummary, SkippedFile
from medrecon.volume import Volume

__all__ = ["LoadResult", "load", "load_all", "read", "scan"]

log = logging.getLogger(__name__)

_NIFTI = (".nii", ".nii.gz")
_ITK = (".nrrd", ".nhdr", ".mha", ".mhd")
_UNEVEN = ("resample", "error")
_TILT = ("correct", "error")


@dataclass
class LoadResult:
    """Volumes read from an input, and the files that were left out, with reasons."""

    volumes: list[Volume] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    n_files: int = 0
    #: What was read: "dicom" (a folder, DICOMDIR or file), "zip", "nifti" or "itk".
    input_kind: str = "dicom"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for ext in (*_NIFTI, *_ITK):
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


@contextmanager
def _dicom_files(path: Path) -> Iterator[tuple[list[Path], dict[str, str]]]:
    """DICOM candidate files under ``path``, plus a map to display names (zip members)."""
    from medrecon.io.archive import extracted_zip
    from medrecon.io.dicom.scan import dicomdir_files, list_files

    if path.is_dir():
        yield list_files(path), {}
    elif _suffix(path) == ".zip":
        with extracted_zip(path) as folder:
            prefix = str(folder) + "/"
            files = list_files(folder)
            yield files, {str(f): f"{path}!{str(f)[len(prefix) :]}" for f in files}
    elif path.name.upper() == "DICOMDIR":
        yield dicomdir_files(path), {}
    else:
        yield [path], {}


def _check(path: str | Path, uneven: str, tilt: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if uneven not in _UNEVEN:
        raise ValueError(f"uneven must be one of {_UNEVEN}, got {uneven!r}")
    if tilt not in _TILT:
        raise ValueError(f"tilt must be one of {_TILT}, got {tilt!r}")
    return p


def _no_images(path: Path, n_files: int, skipped: list[SkippedFile]) -> NoImageError:
    if n_files == 0:
        return NoImageError(f"{path}: no files found. Point medrecon at a folder of DICOM files.")
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    top = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])[:5])
    return NoImageError(
        f"{path}: no loadable DICOM image among {n_files} file(s) ({top}). "
        "Check that the folder holds CT/MR/PET image series."
    )


def _rename(text: str, names: dict[str, str]) -> str:
    return names.get(text, text)


def read(
    path: str | Path,
    *,
    uneven: str = "resample",
    tilt: str = "correct",
    workers: int | None = None,
    select: Callable[[list[SeriesSummary]], Sequence[int]] | None = None,
    philips_scaling: str = "precise",
    derived_dwi: str = "drop",
) -> LoadResult:
    """Read every volume under ``path``.

    ``uneven``: "resample" (default) puts stacks with uneven spacing or missing
    slices on a uniform grid, with a warning; "error" refuses them.
    ``tilt``: "correct" (default) resamples gantry-tilted (sheared) stacks onto an
    orthogonal grid; "error" refuses them. ``workers``: header-reading processes.
    ``select``: for DICOM, called with the header summary of every volume-to-be; it
    returns the indices to decode (so unwanted series cost no pixel decoding).
    ``philips_scaling``: "precise" (default, as dcm2niix) stores Philips MR
    floating-point values, display / (RescaleSlope x ScaleSlope (2005,100E));
    "display" stores RescaleSlope/Intercept values. ``derived_dwi``: Philips
    derived trace/ADC frames in a diffusion series are "drop"ped (default, as
    dcm2niix), "split" into their own volume, or "keep"t. See docs/loading.md.
    """
    p = _check(path, uneven, tilt)
    from medrecon.io.dicom.vendor_rules import apply_plan_rules, check_options

    check_options(philips_scaling, derived_dwi)
    ext = _suffix(p)
    if p.is_file() and ext in _NIFTI:
        from medrecon.io.nifti import read_nifti

        return LoadResult([read_nifti(p)], [], 1, input_kind="nifti")
    if p.is_file() and ext in _ITK:
        from medrecon.io.itk import read_itk

        return LoadResult([read_itk(p)], [], 1, input_kind="itk")

    from medrecon.io.dicom.group import group_slices
    from medrecon.io.dicom.scan import read_headers
    from medrecon.io.dicom.stack import assemble_stack

    with _dicom_files(p) as (files, names):
        headers = read_headers(files, workers=workers, keep_headers=True)
        skipped = list(headers.skipped)
        plans = apply_plan_rules(group_slices(headers.slices), derived_dwi=derived_dwi)
        if not plans:
            raise _no_images(
                p, headers.n_files, [SkippedFile(_rename(s.path, names), s.reason) for s in skipped]
            )
        if select is not None:
            from medrecon.io.dicom.stack import summarize_stack

            summaries = [summarize_stack(pl, philips_scaling=philips_scaling) for pl in plans]
            plans = [plans[i] for i in select(summaries)]
        volumes = []
        for plan in plans:
            try:
                volume, dropped = assemble_stack(
                    plan, uneven=uneven, tilt=tilt, philips_scaling=philips_scaling
                )
            except MedreconError as exc:
                if not names:
                    raise
                # Name zip members, not the temporary folder that is about to vanish.
                raise type(exc)(member_names(str(exc), names)) from exc
            skipped.extend(dropped)
            if names:
                volume.meta.source_files = [_rename(f, names) for f in volume.meta.source_files]
                volume.meta.warnings = [member_names(w, names) for w in volume.meta.warnings]
                if volume.meta.source_headers is not None:
                    volume.meta.source_headers = volume.meta.source_headers.renamed(names)
            for warning in volume.meta.warnings:
                log.warning("series %s: %s", volume.meta.series_number, warning)
            volumes.append(volume)
    skipped = [SkippedFile(_rename(s.path, names), s.reason) for s in skipped]
    kind = "zip" if not p.is_dir() and ext == ".zip" else "dicom"
    return LoadResult(volumes, skipped, headers.n_files, input_kind=kind)


def scan(
    path: str | Path,
    *,
    workers: int | None = None,
    philips_scaling: str = "precise",
    derived_dwi: str = "drop",
) -> ScanReport:
    """Describe the series under ``path`` from headers only (no pixels are decoded).

    ``philips_scaling`` and ``derived_dwi`` as for ``read`` (they change the
    summaries' notes and shapes the way loading would).
    """
    p = _check(path, "resample", "correct")
    from medrecon.io.dicom.vendor_rules import apply_plan_rules, check_options

    check_options(philips_scaling, derived_dwi)
    ext = _suffix(p)
    if p.is_file() and (ext in _NIFTI or ext in _ITK):
        return ScanReport(str(p), 1, [_summary(read(p).volumes[0])], [])

    from medrecon.io.dicom.group import group_slices
    from medrecon.io.dicom.scan import read_headers
    from medrecon.io.dicom.stack import summarize_stack

    with _dicom_files(p) as (files, names):
        headers = read_headers(files, workers=workers)
        plans = apply_plan_rules(group_slices(headers.slices), derived_dwi=derived_dwi)
        skipped = [SkippedFile(_rename(s.path, names), s.reason) for s in headers.skipped]
        if not plans:
            raise _no_images(p, headers.n_files, skipped)
        summaries = [summarize_stack(pl, philips_scaling=philips_scaling) for pl in plans]
        return ScanReport(str(p), headers.n_files, summaries, skipped)


def load_all(path: str | Path, **options) -> list[Volume]:
    """Every volume under ``path`` (see ``read`` for the options)."""
    return read(path, **options).volumes


def load(path: str | Path, *, series: str | int | None = None, **options) -> Volume:
    """The one volume under ``path``; ``series`` (UID or number) picks one of several.

    The choice is made on the header summaries (``read(select=...)``), so the other
    series' pixels are never decoded.
    """
    if series is None:
        volumes = read(path, **options).volumes
    else:
        found: list[SeriesSummary] = []

        def select(summaries: list[SeriesSummary]) -> list[int]:
            found.extend(summaries)
            return [i for i, s in enumerate(summaries) if s.matches(series)]

        volumes = read(path, select=select, **options).volumes
        if not found:  # NIfTI/ITK: one volume, read whole; nothing to choose beforehand
            found = [_summary(v) for v in volumes]
            volumes = [v for v, s in zip(volumes, found) if s.matches(series)]
        if not volumes:
            raise InputError(f"{path}: no series {series!r}; found: {_listing(found)}")
    if len(volumes) > 1:
        listing = _listing([_summary(v) for v in volumes])
        raise AmbiguousInputError(
            f"{path} holds {len(volumes)} volumes: {listing}. Pass series=<number or "
            "UID> to choose one, or use medrecon.load_all()."
        )
    return volumes[0]


def _summary(vol: Volume) -> SeriesSummary:
    """A loaded volume described as a scan would (a NIfTI/ITK file is one series)."""
    return SeriesSummary(
        series_uid=vol.meta.series_uid or "",
        series_number=vol.meta.series_number,
        description=vol.meta.description,
        modality=vol.meta.modality or "",
        shape=vol.shape,
        spacing=vol.spacing,
        n_slices=vol.shape[2],
        n_files=max(1, len(vol.meta.source_files)),
        orientation="".join(vol.orientation_codes()),
        distinguishing=dict(vol.meta.distinguishing),
    )


def _listing(summaries: list[SeriesSummary]) -> str:
    parts = []
    for s in summaries:
        extra = "".join(f", {k}={val}" for k, val in s.distinguishing.items())
        parts.append(f"#{s.series_number} '{s.description}'{extra} {s.shape}")
    return "; ".join(parts)
