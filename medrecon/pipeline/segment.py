"""``Segmenter``: medrecon's own engine, for the pipelines it trains and ships.

A :class:`Segmenter` loads the network(s) once and segments any number of
volumes (:class:`medrecon.models.cache.SegmenterCache` keeps one per model for a
cohort worker). Each call: optional coarse pass to find the organs' box,
preprocessing, sliding-window inference, resampling to the native grid,
refinement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medrecon.pipeline.config import (
    NetworkSpec,
    Pipeline,
    WeightsSpec,
    left_right_axis,
    left_right_pairs,
)
from medrecon.pipeline.device import DeviceChoice, resolve_device
from medrecon.pipeline.infer import predict_probabilities
from medrecon.pipeline.model import load_model
from medrecon.pipeline.native import model_to_native
from medrecon.pipeline.preprocess import prepare_input
from medrecon.pipeline.registry import load_pipeline
from medrecon.pipeline.segmentation import Segmentation
from medrecon.volume import Volume

__all__ = ["Segmentation", "Segmenter"]

#: Builds a pipeline's network with its weights (:func:`~medrecon.pipeline.model.load_model`).
ModelLoader = Callable[[NetworkSpec, WeightsSpec | None], Any]

logger = logging.getLogger(__name__)


def _crop(volume: Volume, start, stop) -> Volume:
    """The sub-volume ``[start, stop)`` with its affine shifted to match."""
    sl = tuple(slice(a, b) for a, b in zip(start, stop))
    affine = volume.affine.copy()
    affine[:3, 3] = volume.voxel_to_ras(np.asarray(start))[0]
    return Volume(volume.array[sl], affine, volume.meta)


class Segmenter:
    """A pipeline with its network loaded on a device, ready for many volumes.

    Parameters
    ----------
    pipeline:
        A :class:`Pipeline`, a shipped pipeline's name, or a YAML path.
    device:
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    amp:
        Mixed precision; None means on for CUDA (bfloat16 where supported).
    model_loader:
        Builds each network with its weights (default :func:`load_model`);
        :class:`SegmenterCache` passes one that shares networks between pipelines.
    """

    def __init__(
        self,
        pipeline: Pipeline | str | Path,
        *,
        device: str = "auto",
        amp=None,
        model_loader: ModelLoader | None = None,
    ):
        load = model_loader or load_model
        self.pipeline = load_pipeline(pipeline)
        self.choice: DeviceChoice = resolve_device(device, amp=amp)
        self.net = load(self.pipeline.network, self.pipeline.weights)
        coarse = self.pipeline.coarse
        self.coarse_net = (
            load(coarse.network, coarse.weights)
            if coarse is not None and coarse.network is not None
            else None
        )

    @property
    def _prep_device(self) -> str:
        # Preprocessing follows the network to a CUDA GPU; MPS lacks some of the ops.
        return self.choice.device if self.choice.is_cuda else "cpu"

    def _probabilities(
        self, net, volume: Volume, spacing, warnings, timings, tta=True, what="windows"
    ):
        t0 = time.perf_counter()
        model_input = prepare_input(
            volume, self.pipeline.preprocess, spacing=spacing, device=self._prep_device
        )
        t1 = time.perf_counter()
        spec = self.pipeline.inference
        if not tta:
            spec = replace(spec, tta_flips=())
        elif spec.tta_flips:
            # medrecon's training swaps left and right labels on a left-right flip, so a
            # mirrored TTA pass must swap them back.
            spec = replace(
                spec,
                left_right_axis=left_right_axis(self.pipeline.preprocess.orientation),
                left_right_pairs=tuple(left_right_pairs(self.pipeline)),
            )
        probs, attempt = predict_probabilities(
            net, model_input.tensor, spec, self.choice, warnings, what
        )
        t2 = time.perf_counter()
        timings["preprocess"] = timings.get("preprocess", 0.0) + t1 - t0
        timings["inference"] = timings.get("inference", 0.0) + t2 - t1
        logger.info(
            "inference on %s model grid (%s): %.2f s",
            "x".join(map(str, model_input.spatial_shape)),
            attempt.describe(),
            t2 - t1,
        )
        return probs, model_input.affine, attempt

    def _coarse_box(self, volume: Volume, warnings, timings):
        """Native voxel box around every label found by the coarse pass, plus the margin."""
        coarse = self.pipeline.coarse
        assert coarse is not None
        net = self.coarse_net if self.coarse_net is not None else self.net
        t0 = time.perf_counter()
        probs, affine, _ = self._probabilities(
            net, volume, coarse.spacing, warnings, {}, tta=False, what="coarse windows"
        )
        found = np.argwhere(probs.argmax(dim=0).cpu().numpy() > 0)
        timings["coarse"] = time.perf_counter() - t0
        if len(found) == 0:
            warnings.append(
                "coarse pass found no labelled voxels; the fine pass used the whole volume"
            )
            logger.warning(warnings[-1])
            return None
        lo, hi = found.min(axis=0) - 0.5, found.max(axis=0) + 0.5
        corners = np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        ras = corners @ affine[:3, :3].T + affine[:3, 3]
        ijk = volume.ras_to_voxel(ras)
        margin = coarse.margin_mm / np.asarray(volume.spacing)
        shape = np.asarray(volume.spatial_shape)
        start = np.clip(np.floor(ijk.min(axis=0) - margin), 0, shape).astype(int)
        stop = np.clip(np.ceil(ijk.max(axis=0) + margin) + 1, 0, shape).astype(int)
        return tuple(start.tolist()), tuple(stop.tolist())

    def __call__(self, volume: Volume, *, probabilities: bool = False) -> Segmentation:
        """Segment one 3D volume; the result lies on the volume's own grid."""
        from medrecon.pipeline.refine import refine_labels

        warnings: list[str] = []
        timings: dict[str, float] = {}
        box = None
        target = volume
        if self.pipeline.coarse is not None:
            box = self._coarse_box(volume, warnings, timings)
            if box is not None:
                target = _crop(volume, *box)
        probs, affine, attempt = self._probabilities(self.net, target, None, warnings, timings)
        t0 = time.perf_counter()
        labels, native_probs = model_to_native(
            probs,
            affine,
            target.affine,
            target.spatial_shape,
            label_dtype=self.pipeline.label_dtype,
            with_probabilities=probabilities,
        )
        del probs
        if box is not None:
            full = np.zeros(volume.spatial_shape, dtype=labels.dtype)
            sl = tuple(slice(a, b) for a, b in zip(*box))
            full[sl] = labels
            labels = full
            if native_probs is not None:
                padded = np.zeros((*volume.spatial_shape, native_probs.shape[-1]), np.float32)
                padded[..., 0] = 1.0
                padded[sl] = native_probs
                native_probs = padded
        timings["resample"] = time.perf_counter() - t0
        if self.pipeline.refine:
            t0 = time.perf_counter()
            labels = refine_labels(
                labels,
                volume.spacing,
                self.pipeline.refine,
                volume.affine,
                image=volume.array,
                modality=volume.meta.modality or self.pipeline.modality,
            )
            timings["refine"] = time.perf_counter() - t0
        return Segmentation.on_grid_of(
            volume,
            labels,
            self.pipeline,
            attempt.device,
            timings=timings,
            warnings=warnings,
            probabilities=native_probs,
            roi_box=box,
        )
