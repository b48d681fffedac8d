"""Run a MONAI bundle on medrecon's Volume the way its own ``SupervisedEvaluator`` would.

One iteration of the evaluator, replayed: the image item (as the bundle's
``LoadImaged`` would have made it), the bundle's ``preprocessing``, collation
into a batch of one, the bundle's ``inferer`` on its network under eval mode
and ``no_grad`` (autocast only on CUDA and only when the evaluator's ``amp``
asks, as MONAI does), decollation, and the bundle's ``postprocessing`` without
its writers. The resulting label map is then put on the Volume's own grid:
when the postprocessing inverted the spatial steps (``Invertd``) it already is;
otherwise it is resampled nearest-neighbour by affine, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import numpy as np

from medrecon.errors import PipelineError
from medrecon.foreign.bundle.configured import configure, importable
from medrecon.foreign.bundle.load import BundleSpec
from medrecon.foreign.bundle.loader import load_like_bundle
from medrecon.pipeline.config import Pipeline
from medrecon.pipeline.device import resolve_device
from medrecon.pipeline.segmentation import Segmentation
from medrecon.volume import Volume

__all__ = ["BundleSegmenter"]

log = logging.getLogger(__name__)

_PRED = "pred"  # MONAI's CommonKeys.PRED: where the evaluator puts the network output


class BundleSegmenter:
    """A trusted bundle's network and transforms, built once, for many volumes.

    ``amp`` None follows the bundle's evaluator; False turns it off; it never
    turns on where the bundle does not ask for it, and never off CUDA.
    """

    def __init__(self, pipeline: Pipeline, device: str = "auto", amp: bool | None = None) -> None:
        if pipeline.engine != "bundle" or not isinstance(pipeline.foreign, BundleSpec):
            raise PipelineError(
                f"pipeline {pipeline.name!r} is not a MONAI bundle (engine {pipeline.engine!r}); "
                "read bundles with medrecon.foreign.bundle.load_bundle"
            )
        self.pipeline = pipeline
        self.spec: BundleSpec = pipeline.foreign
        choice = resolve_device(device, amp=False)
        self.device = choice.device
        t0 = time.perf_counter()
        self.parts = configure(self.spec, self.device)
        self.amp = choice.is_cuda and self.parts.amp and amp is not False
        log.info(
            "bundle %s ready on %s in %.1f s (amp %s)",
            pipeline.name,
            self.device,
            time.perf_counter() - t0,
            "on" if self.amp else "off",
        )

    def __call__(self, volume: Volume, *, probabilities: bool = False) -> Segmentation:
        warnings: list[str] = list(self.pipeline.foreign.notes)
        if probabilities:
            warnings.append(
                "a MONAI bundle's postprocessing makes the label map; no probabilities are kept"
            )
        timings: dict[str, float] = {}
        with importable(self.spec.root):
            t0 = time.perf_counter()
            item = self.parts.preprocessing(
                load_like_bundle(volume, self.parts.load, self.spec.input_key)
            )
            t1 = time.perf_counter()
            item = self._infer_and_postprocess(item)
            t2 = time.perf_counter()
        timings["preprocess"], timings["inference"] = t1 - t0, t2 - t1
        labels = self._native_labels(item, volume, warnings)
        timings["resample"] = time.perf_counter() - t2
        unknown = sorted(set(np.unique(labels).tolist()) - {0, *self.pipeline.label_names})
        if unknown:
            warnings.append(
                f"the bundle produced label values {unknown} that {self.spec.labels_from} "
                "does not name"
            )
        for message in warnings:
            log.warning("%s: %s", self.pipeline.name, message)
        return Segmentation.on_grid_of(
            volume,
            labels.astype(self.pipeline.label_dtype),
            self.pipeline,
            self.device,
            timings=timings,
            warnings=warnings,
        )

    def _infer_and_postprocess(self, item: dict[str, Any]) -> dict[str, Any]:
        """SupervisedEvaluator's iteration for a batch of one (DataLoader collation included)."""
        import torch
        from monai.data import decollate_batch, list_data_collate
        from monai.networks.utils import eval_mode
        from monai.transforms import apply_transform

        key = self.spec.input_key
        batch = list_data_collate([item])
        inputs = batch[key].to(self.device)
        autocast = (
            torch.autocast("cuda", **self.parts.amp_kwargs)
            if self.amp
            else contextlib.nullcontext()
        )
        with eval_mode(self.parts.network), autocast:
            pred = self.parts.inferer(inputs, self.parts.network)
        output = {key: inputs, _PRED: pred}
        merged = dict(decollate_batch(batch, detach=True)[0])
        merged.update(decollate_batch(output, detach=True)[0])
        if self.parts.postprocessing is not None:
            merged = apply_transform(self.parts.postprocessing, merged)
        return merged

    def _native_labels(
        self, item: dict[str, Any], volume: Volume, warnings: list[str]
    ) -> np.ndarray:
        import torch

        pred = item.get(_PRED)
        if not isinstance(pred, torch.Tensor) or pred.ndim != 4:
            raise PipelineError(
                f"{self.spec.config}: postprocessing left `{_PRED}` as "
                f"{type(pred).__name__} {tuple(getattr(pred, 'shape', ()))}; expected a "
                "channel-first 3D label map"
            )
        array = pred.detach().cpu().float().numpy()
        if array.shape[0] > 1:
            warnings.append(
                f"the bundle's postprocessing left {array.shape[0]} channels; "
                "medrecon took the argmax as the label map"
            )
            labels = np.argmax(array, axis=0)
        else:
            labels = np.rint(array[0])
        labels = labels.astype(np.int64)
        affine = np.asarray(getattr(pred, "affine", np.eye(4)), dtype=np.float64)
        if labels.shape == volume.spatial_shape and np.allclose(affine, volume.affine, atol=1e-3):
            return labels
        warnings.append(
            f"the bundle's postprocessing left the labels on a {labels.shape} grid, not the "
            f"image's {volume.spatial_shape} one (no Invertd?); resampled nearest-neighbour"
        )
        return _resample_nearest(labels, affine, volume)


def _resample_nearest(labels: np.ndarray, affine: np.ndarray, volume: Volume) -> np.ndarray:
    """``labels`` (voxel -> RAS ``affine``) sampled at the centres of ``volume``'s voxels."""
    from scipy.ndimage import affine_transform

    native_to_pred = np.linalg.inv(affine) @ volume.affine
    return affine_transform(
        labels,
        native_to_pred[:3, :3],
        offset=native_to_pred[:3, 3],
        output_shape=volume.spatial_shape,
        order=0,
        mode="constant",
        cval=0,
    )
