"""The exception hierarchy: one root, each subclass also a matching built-in.

Messages say what was wrong, where (file, series, study) and what to do.
"""

from __future__ import annotations

__all__ = [
    "MedreconError",
    "InputError",
    "FormatError",
    "UnsafeArchiveError",
    "AmbiguousInputError",
    "DicomError",
    "NoImageError",
    "DuplicateSliceError",
    "UnevenSpacingError",
    "DecodeError",
    "OutputExistsError",
    "OutputError",
    "OutOfDomainError",
    "PipelineError",
    "InferenceError",
]


class MedreconError(Exception):
    """Root of every error medrecon raises on purpose."""


class InputError(MedreconError, ValueError):
    """The input given by the user cannot be used as it is."""


class FormatError(InputError):
    """A file's format is unknown or unsupported."""


class UnsafeArchiveError(InputError):
    """A zip archive holds a member that would escape the extraction folder."""


class AmbiguousInputError(InputError):
    """The input holds several volumes and none was chosen."""


class DicomError(MedreconError, ValueError):
    """A DICOM study, series or file cannot be turned into a volume."""


class NoImageError(DicomError):
    """No loadable DICOM image was found in the input."""


class DuplicateSliceError(DicomError):
    """Two slices share a position but hold different pixels."""


class UnevenSpacingError(DicomError):
    """Slice spacing is uneven (or slices are missing) and resampling was refused."""


class DecodeError(DicomError):
    """Pixel data could not be decoded (compressed syntax without a decoder, or corrupt data)."""


class OutputExistsError(MedreconError, FileExistsError):
    """An output file or folder already exists and overwriting was not asked for
    (or it holds files medrecon did not write, which ``--overwrite`` never replaces)."""


class OutputError(MedreconError, OSError):
    """The output location cannot be written (read-only, no permission, not a folder)."""


class OutOfDomainError(InputError):
    """The study is not what the pipeline is made for (another modality or body part);
    ``force`` segments it anyway, with a warning."""


class PipelineError(MedreconError, ValueError):
    """A pipeline file (or MONAI bundle) is invalid: unknown key, bad value, missing or
    mismatched weights, a label without a name."""


class InferenceError(MedreconError, RuntimeError):
    """Inference failed on every device medrecon could fall back to."""
