"""What a run is asked to write: :class:`OutputOptions`, checked once when it is made.

One frozen object carries the output switches from the command line (or a
script) through ``run_cohort`` and its workers to ``run_study``, where
:class:`~medrecon.study.outputs.OutputPlan` combines it with the pipeline's own list.
Everything that can be checked without a pipeline is checked here, at
construction, so a bad value fails before any study is read; a changed copy
(:meth:`OutputOptions.with_overrides`, a manifest row's options) is checked again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import Any

from medrecon.errors import InputError
from medrecon.export import MESH_FORMATS
from medrecon.pipeline.config import OUTPUTS

__all__ = ["OUTPUT_OPTIONS", "MeshFormat", "OutputOptions"]


class _Choice(str, Enum):
    """A string choice that prints as its value (``"stl"``, not ``MeshFormat.STL``)."""

    def __str__(self) -> str:
        return self.value


#: Surface mesh formats, one member per entry of :data:`medrecon.export.MESH_FORMATS`.
MeshFormat = _Choice("MeshFormat", {f.upper(): f for f in MESH_FORMATS}, module=__name__)


@dataclass(frozen=True)
class OutputOptions:
    """The output switches of one run.

    ``mesh_format``: one of :data:`~medrecon.export.MESH_FORMATS` (a string or a
    :class:`MeshFormat`; kept as the enum). ``dicom_seg=False`` drops the DICOM SEG.
    ``mrb`` also packs the scene into ``scene.mrb``. ``outputs``: a subset of
    :data:`~medrecon.pipeline.config.OUTPUTS`, or None for the pipeline's list.
    Raises :class:`~medrecon.errors.InputError` for a bad value.
    """

    mesh_format: MeshFormat | str = MeshFormat.STL
    dicom_seg: bool = True
    mrb: bool = False
    outputs: Sequence[str] | None = None

    def __post_init__(self) -> None:
        try:
            fmt = MeshFormat(self.mesh_format)
        except ValueError:
            raise InputError(
                f"mesh format {self.mesh_format!r}: choose one of {', '.join(MESH_FORMATS)}"
            ) from None
        object.__setattr__(self, "mesh_format", fmt)  # frozen: set once, here
        for name in ("dicom_seg", "mrb"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.outputs is None:
            return  # the pipeline's list; OutputPlan checks it against --mrb
        chosen = tuple(self.outputs)
        object.__setattr__(self, "outputs", chosen)  # a tuple: hashable, never changed
        unknown = [o for o in chosen if o not in OUTPUTS]
        if unknown:
            raise InputError(f"unknown output(s) {unknown}; choose from {', '.join(OUTPUTS)}")
        if self.mrb and "scene" not in chosen:
            raise InputError("--mrb packs the scene; the scene output is not selected")

    def with_overrides(self, changes: Mapping[str, Any], *, where: str) -> OutputOptions:
        """A checked copy with ``changes`` (names from :data:`OUTPUT_OPTIONS`); a bad
        value raises :class:`~medrecon.errors.InputError` that starts with ``where``
        (the manifest row or study it came from)."""
        if not changes:
            return self
        try:
            return replace(self, **changes)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None


#: The option names, in order: also the manifest columns that set them per study.
OUTPUT_OPTIONS = tuple(f.name for f in fields(OutputOptions))
