"""The nnU-Net engine: runs a loaded nnU-Net v2 model on medrecon Volumes.

Steps, in nnU-Net's order: the array as the plans' reader gives it, transpose
forward, crop to the nonzero box, normalise, resample to the configuration's
spacing, sliding window (mirroring, folds averaged), logits resampled back to
the cropped shape, argmax, uncrop, transpose back, and the labels put on the
Volume's own grid.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from medrecon.errors import PipelineError
from medrecon.foreign.nnunet.checkpoint import load_checkpoint
from medrecon.foreign.nnunet.export import logits_to_labels
from medrecon.foreign.nnunet.folder import NnunetModel
from medrecon.foreign.nnunet.network import build_network, load_weights
from medrecon.foreign.nnunet.preprocess import nonzero_box, normalise, reader_view
from medrecon.foreign.nnunet.resample import axis_orders, new_shape, resample_array
from medrecon.foreign.nnunet.sliding import predict_logits

__all__ = ["NnunetSegmenter"]

logger = logging.getLogger(__name__)


class NnunetSegmenter:
    """An nnU-Net pipeline with every fold's network loaded, ready for many volumes."""

    def __init__(self, pipeline, device: str = "auto", amp=None) -> None:
        import torch

        from medrecon.pipeline.device import resolve_device

        model = pipeline.foreign
        if not isinstance(model, NnunetModel):
            raise PipelineError(
                f"pipeline {pipeline.name!r} has engine 'nnunet' but no nnU-Net model; "
                "build it with medrecon.foreign.nnunet.load_nnunet(folder)"
            )
        self.pipeline = pipeline
        self.model = model
        self.choice = resolve_device(device, amp=amp)
        self.device = torch.device(self.choice.device)
        config = model.configuration
        checkpoints = [load_checkpoint(path) for path in model.checkpoints]
        for ck in checkpoints:
            if ck.configuration not in (None, config.name):
                raise PipelineError(
                    f"{ck.path} was trained for configuration {ck.configuration!r}, but it "
                    f"sits in the {config.name!r} folder; the results folder is mixed up"
                )
        self.networks = []
        for ck in checkpoints:
            network = build_network(config.architecture, 1, model.labels.num_heads, ck.path)
            load_weights(network, ck.weights, ck.path)
            self.networks.append(network.eval().to(self.device))
        self.mirror_axes = checkpoints[0].mirror_axes if model.tta else None
        logger.info(
            "nnU-Net %s: %d fold(s) on %s, mirroring %s",
            pipeline.name,
            len(self.networks),
            self.choice.device,
            self.mirror_axes,
        )

    def _network_logits(self, data: np.ndarray):
        """Fold-averaged logits on the network grid (3-D, or slice by slice for 2-D)."""
        import torch

        config = self.model.configuration
        image = torch.from_numpy(data).to(self.device)
        amp, step = self.choice.amp_dtype, self.model.tile_step_size
        if not config.is_2d:
            return predict_logits(
                self.networks, image, config.patch_size, self.mirror_axes, amp_dtype=amp, step=step
            )
        slices = [
            predict_logits(
                self.networks,
                image[d],
                config.patch_size,
                self.mirror_axes,
                amp_dtype=amp,
                step=step,
            )
            for d in range(image.shape[0])
        ]
        return torch.stack(slices, dim=1)

    def __call__(self, volume, *, probabilities: bool = False):
        from medrecon.pipeline.segmentation import Segmentation

        config = self.model.configuration
        warnings: list[str] = list(self.model.notes)
        if probabilities:
            warnings.append("the nnU-Net engine returns labels only, no probabilities")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        view = reader_view(volume, config.reader, self.model.folder)
        forward = config.transpose_forward
        array = view.array.transpose(forward)
        spacing = tuple(view.spacing[a] for a in forward)
        box = nonzero_box(array)
        cropped = array[box]
        target = config.spacing if not config.is_2d else (spacing[0], *config.spacing)
        shape = new_shape(cropped.shape, spacing, target)
        data = normalise(cropped, config)
        orders, separate = axis_orders(config.data_resampling, spacing, target)
        data = resample_array(data, shape, orders, separate)
        timings["preprocess"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        logits = self._network_logits(np.ascontiguousarray(data, dtype=np.float32))
        del data
        timings["inference"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        orders, _ = axis_orders(config.probability_resampling, target, spacing)
        dtype = self.pipeline.label_dtype
        labels = np.zeros(array.shape, dtype=dtype)
        labels[box] = logits_to_labels(logits, cropped.shape, orders, self.model.labels, dtype)
        del logits
        labels = view.restore(labels.transpose(config.transpose_backward))
        labels = np.ascontiguousarray(labels)
        timings["resample"] = time.perf_counter() - t0
        logger.debug("nnU-Net timings: %s", timings)

        return Segmentation.on_grid_of(
            volume, labels, self.pipeline, self.choice.device, timings=timings, warnings=warnings
        )
