"""``Segmentation``: what every engine returns, labels on the input volume's own grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medrecon.labels import Label
from medrecon.pipeline.config import Pipeline
from medrecon.volume import Volume

__all__ = ["Segmentation"]


@dataclass
class Segmentation:
    """Labels on the input's native grid, the label table and how they were made."""

    labels: Volume
    label_table: tuple[Label, ...]
    pipeline: Pipeline
    device: str
    probabilities: Volume | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Native-grid voxel box (start, stop) the fine pass ran on (coarse-to-fine).
    roi_box: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None

    @classmethod
    def on_grid_of(
        cls,
        volume: Volume,
        labels: np.ndarray,
        pipeline: Pipeline,
        device: str,
        *,
        timings: dict[str, float],
        warnings: list[str],
        probabilities: np.ndarray | None = None,
        roi_box=None,
    ) -> Segmentation:
        """``labels`` (and ``probabilities``) on ``volume``'s own grid, their meta
        saying which model made them; every engine returns one of these."""
        meta = volume.meta.copy()
        meta.description = f"{pipeline.name} labels"
        meta.warnings = list(volume.meta.warnings) + list(warnings)
        return cls(
            labels=Volume(labels, volume.affine.copy(), meta),
            label_table=pipeline.labels,
            pipeline=pipeline,
            device=device,
            probabilities=(
                Volume(probabilities, volume.affine.copy(), meta.copy())
                if probabilities is not None
                else None
            ),
            timings=timings,
            warnings=warnings,
            roi_box=roi_box,
        )

    def present_labels(self) -> list[Label]:
        """The labels of the table that occur in the label map."""
        present = set(np.unique(self.labels.array).tolist())
        return [label for label in self.label_table if label.value in present]
