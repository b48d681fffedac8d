"""What ``run_cohort`` is asked to do: a :class:`CohortSpec` of a few frozen groups.

:class:`StudySettings` is what every study is run with (it travels to the
workers), :class:`EngineSettings` where and how hard studies are run,
:class:`Reporting` what the driver tells. Each group checks its values when it
is made, so a bad one fails before any study is looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from medrecon.cohort.progress import CohortEvent
from medrecon.errors import InputError
from medrecon.study.output_options import OutputOptions

__all__ = ["CohortSpec", "EngineKind", "EngineSettings", "Reporting", "StudySettings"]


class EngineKind(str, Enum):
    """Where a cohort's studies run."""

    LOCAL = "local"  #: worker processes on this machine
    RAY = "ray"  #: actors on a Ray cluster

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class StudySettings:
    """How each study is run (``run_study``'s settings, the same for the whole cohort;
    a manifest row may change its own ``output_options``).

    ``model``: ``auto`` (None, the default: each study gets the shipped pipeline for
    its modality), any model ``--model`` takes (a shipped name, a YAML path, a MONAI
    bundle or nnU-Net v2 folder, ``totalsegmentator:TASK``, a
    :class:`~medrecon.models.ref.ModelRef` with its options) or a Pipeline.
    ``force_domain`` segments studies of another modality or body part than the
    pipeline's anyway (``run_study(force=True)``) instead of failing them.
    """

    model: Any = None
    device: str = "auto"
    force_domain: bool = False
    output_options: OutputOptions = field(default_factory=OutputOptions)


@dataclass(frozen=True)
class EngineSettings:
    """Where studies run and how often a failed one is tried again.

    ``kind``: ``local`` (``workers`` processes, default 1; 0 = in this process) or
    ``ray`` (``address`` of a cluster, else a local one; ``workers`` actors, default:
    fill the cluster; ``gpus_per_study`` GPU share per actor). ``retries``: further
    attempts of a failed study. ``threads``: torch threads per worker (default:
    local, the CPUs shared out; Ray, the actor's CPUs). ``timeout``: seconds after
    which a study's worker is killed and the attempt failed.
    """

    kind: EngineKind | str = EngineKind.LOCAL
    workers: int | None = None
    address: str | None = None
    gpus_per_study: float | None = None
    retries: int = 2
    threads: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", EngineKind(self.kind))  # frozen: set once, here
        except ValueError:
            names = ", ".join(k.value for k in EngineKind)
            raise InputError(f"engine must be one of {names}, not {self.kind!r}") from None
        if self.retries < 0:
            raise InputError(f"retries must be 0 or more, not {self.retries}")
        if self.timeout is not None and self.timeout <= 0:
            raise InputError(f"timeout must be a positive number of seconds, not {self.timeout}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be 1 or more, not {self.threads}")
        if self.kind is EngineKind.LOCAL:
            if self.address is not None or self.gpus_per_study is not None:
                raise InputError("--address and --gpus-per-study apply to --engine ray only")
            if self.workers == 0 and self.timeout is not None:
                raise InputError("a study timeout needs worker processes (--workers 1 or more)")


@dataclass(frozen=True)
class Reporting:
    """What the driver tells: ``progress`` draws a bar on stderr, ``log_file`` writes
    ``OUTDIR/cohort.log``, ``on_event`` hears every step (a :class:`CohortEvent`)."""

    progress: bool = False
    log_file: bool = True
    on_event: Callable[[CohortEvent], None] | None = None


@dataclass(frozen=True)
class CohortSpec:
    """Everything ``run_cohort`` needs beyond its input and output folders.

    ``force`` redoes studies already complete in OUTDIR; ``layout`` says how a folder
    input is read (``auto``, ``folders``, ``dicom``: see
    :func:`~medrecon.cohort.studies.discover_studies`).
    """

    study: StudySettings = field(default_factory=StudySettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    reporting: Reporting = field(default_factory=Reporting)
    force: bool = False
    layout: str = "auto"
