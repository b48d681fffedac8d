"""TotalSegSegmenter: runs a TotalSegmentator task the way TotalSegmentator does.

Per volume: the closest RAS orientation and the task's spacing
(:mod:`~medrecon.foreign.totalseg.grid`); each part's nnU-Net model on that same
image (medrecon's nnU-Net engine, networks loaded once here); the part maps
merged into TotalSegmentator's numbering, later parts winning a contested voxel
(:mod:`~medrecon.foreign.totalseg.merge`); the map back on the input grid by
nearest neighbour.

Not done, as TotalSegmentator does not do them for these tasks by default:
cropping (``--body_seg``, ``--roi_subset``), and post-processing. TotalSegmentator
splits images over 512x512x900 voxels (at the model spacing) into three
overlapping slabs to bound memory; medrecon runs the whole image in one sliding
window pass, so results near those seams can differ slightly.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from medrecon.errors import PipelineError
from medrecon.foreign.totalseg.grid import from_model_grid, to_model_grid
from medrecon.foreign.totalseg.loader import TotalSegModel
from medrecon.foreign.totalseg.merge import MergeReport, merge_parts, part_lookup
from medrecon.pipeline.config import Pipeline
from medrecon.pipeline.segmentation import Segmentation
from medrecon.volume import Volume

__all__ = ["TotalSegSegmenter"]

log = logging.getLogger(__name__)


class TotalSegSegmenter:
    """A TotalSegmentator task with every part's networks loaded, for many volumes."""

    def __init__(self, pipeline: Pipeline, *, device: str = "auto", amp=None) -> None:
        from medrecon.foreign.nnunet.engine import NnunetSegmenter

        model = pipeline.foreign
        if pipeline.engine != "totalsegmentator" or not isinstance(model, TotalSegModel):
            raise PipelineError(
                f"{pipeline.name}: not a TotalSegmentator pipeline (engine {pipeline.engine!r}); "
                "build it with medrecon.foreign.totalseg.load_totalsegmentator"
            )
        self.pipeline = pipeline
        self.model = model
        task = model.task
        self.lookups = [part_lookup(p.classes, task.classes) for p in task.parts]
        self.parts = [NnunetSegmenter(p, device=device, amp=amp) for p in model.parts]

    def __call__(self, volume: Volume, *, probabilities: bool = False) -> Segmentation:
        """Segment one volume; the labels lie on its own grid, in TotalSegmentator's
        numbering, with TotalSegmentator's class names."""
        task = self.model.task
        warnings: list[str] = list(self.model.notes)
        timings: dict[str, float] = {}
        if probabilities:
            warnings.append(
                f"{task.spec}: no probabilities (TotalSegmentator merges its parts' label "
                "maps, not their scores)"
            )
        if volume.array.ndim == 4:
            # TotalSegmentator also segments the first frame of a 4D image only.
            warnings.append(f"{task.spec}: 4D input; only its first frame was segmented")
            volume = Volume(volume.array[..., 0], volume.affine, volume.meta)
        t0 = time.perf_counter()
        model_input, grid = to_model_grid(volume, task.spacing)
        timings["preprocess"] = time.perf_counter() - t0
        log.info(
            "%s: %s at %s mm -> model grid %s",
            task.spec,
            "x".join(map(str, volume.spatial_shape)),
            "x".join(f"{s:.3g}" for s in volume.spacing),
            "x".join(map(str, model_input.spatial_shape)),
        )
        part_maps = []
        devices = []
        for part, engine in zip(task.parts, self.parts, strict=True):
            t0 = time.perf_counter()
            seg = engine(model_input)
            timings[f"part_{part.dataset_id}"] = time.perf_counter() - t0
            warnings.extend(f"{part.folder}: {w}" for w in seg.warnings)
            devices.append(seg.device)
            part_maps.append(np.asarray(seg.labels.array))
        t0 = time.perf_counter()
        report = MergeReport()
        dtype = self.pipeline.label_dtype
        merged = merge_parts(part_maps, self.lookups, dtype=dtype, report=report)
        del part_maps
        for index, values in report.unnamed.items():
            warnings.append(
                f"{task.parts[index].folder}: label values {values} are not in its class map; "
                "left as background"
            )
        overlap = sum(report.overwritten.values())
        if overlap:
            log.info("%s: %d voxels claimed by two parts (later part kept)", task.spec, overlap)
        timings["merge"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels = from_model_grid(merged, grid)
        timings["resample"] = time.perf_counter() - t0
        return Segmentation.on_grid_of(
            volume,
            labels,
            self.pipeline,
            devices[0] if devices else "cpu",
            timings=timings,
            warnings=warnings,
        )
