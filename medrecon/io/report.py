"""What a scan found: series summaries and the files left out, with reasons."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ScanReport", "SeriesSummary", "SkippedFile"]


@dataclass(frozen=True)
class SkippedFile:
    """A file (or object) that did not become part of any volume, and why."""

    path: str
    reason: str


@dataclass
class SeriesSummary:
    """One volume-to-be, described from headers only."""

    series_uid: str
    series_number: int | None
    description: str
    modality: str
    shape: tuple[int, ...]
    spacing: tuple[float, float, float]
    n_slices: int
    n_files: int
    orientation: str
    distinguishing: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: "rgb" for a colour volume (i, j, k, 3); other 4D axes are not named from headers.
    frame_axis: str | None = None

    def matches(self, series: str | int) -> bool:
        """True when ``series`` (its UID, or its number as int or text) names this one."""
        text = str(series)
        return text == (self.series_uid or "") or (
            self.series_number is not None and text == str(self.series_number)
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["spacing"] = [round(s, 6) for s in self.spacing]
        return d


@dataclass
class ScanReport:
    """Everything ``medrecon.scan`` found under an input path."""

    path: str
    n_files: int
    series: list[SeriesSummary] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "n_files": self.n_files,
            "series": [s.to_dict() for s in self.series],
            "skipped": [asdict(s) for s in self.skipped],
        }
