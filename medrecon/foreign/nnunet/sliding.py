"""nnU-Net's sliding-window prediction: tile placement, Gaussian blending, mirroring.

The numbers follow nnU-Net v2: tiles a step of at most half a patch apart,
spread evenly so the last one ends at the border; a Gaussian importance map with
sigma = patch / 8 scaled to a peak of 10; mirroring over every non-empty subset
of the allowed axes; folds averaged. Folds and mirror variants of one tile run
together as a batch (instance norm is per sample, so this changes nothing).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np

__all__ = ["gaussian_map", "mirror_combinations", "pad_to_patch", "predict_logits", "tile_starts"]

logger = logging.getLogger(__name__)

STEP = 0.5
SIGMA_SCALE = 1.0 / 8
PEAK = 10.0
#: Voxels per forward batch (mirror variants of one tile are grouped up to this).
BATCH_VOXELS = 2**18


def tile_starts(
    image_size: Sequence[int], patch: Sequence[int], step: float = STEP
) -> list[list[int]]:
    """Start index of every tile along each axis (image at least as large as the patch)."""
    starts = []
    for size, tile in zip(image_size, patch):
        count = int(np.ceil((size - tile) / (tile * step))) + 1
        if count > 1:
            stride = (size - tile) / (count - 1)
            starts.append([int(np.round(stride * i)) for i in range(count)])
        else:
            starts.append([0])
    return starts


def gaussian_map(patch: Sequence[int]) -> np.ndarray:
    """The importance map (float32): a Gaussian at the patch centre, peak 10, no zeros."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(tuple(patch))
    delta[tuple(p // 2 for p in patch)] = 1
    blurred = gaussian_filter(delta, [p * SIGMA_SCALE for p in patch], 0, mode="constant", cval=0)
    blurred = (blurred / (blurred.max() / PEAK)).astype(np.float32)
    # Zero weight at a voxel covered by one tile only would divide 0 by 0.
    positive = blurred[blurred > 0]
    blurred[blurred == 0] = positive.min()
    return blurred


def mirror_combinations(axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """The flips to average: none, then every non-empty subset of ``axes`` (spatial)."""
    combos: list[tuple[int, ...]] = [()]
    axes = list(axes or ())
    for k in range(1, len(axes) + 1):
        combos.extend(itertools.combinations(axes, k))
    return combos


def pad_to_patch(shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int]]:
    """Zero padding (before, after) per axis to reach the patch size, centred with the
    odd voxel after."""
    pads = []
    for size, tile in zip(shape, patch):
        missing = max(tile - size, 0)
        pads.append((missing // 2, missing - missing // 2))
    return pads


def predict_logits(
    networks: Sequence,
    image,
    patch: Sequence[int],
    mirror_axes: Sequence[int] | None,
    *,
    amp_dtype=None,
    step: float = STEP,
):
    """Fold-averaged logits ``(heads, *image.shape)`` for a 3-D float32 torch ``image``
    (already on the networks' device); accumulated in float32."""
    import torch

    device = image.device
    pads = pad_to_patch(image.shape, patch)
    padded = torch.nn.functional.pad(image, [p for pair in reversed(pads) for p in pair])
    weight = torch.from_numpy(gaussian_map(patch)).to(device)
    combos = mirror_combinations(mirror_axes)
    per_batch = max(1, BATCH_VOXELS // int(np.prod(patch)))
    heads = None
    logits = norm = None
    autocast = (
        torch.autocast(device.type, dtype=getattr(torch, amp_dtype))
        if amp_dtype and device.type == "cuda"
        else nullcontext()
    )
    starts = tile_starts(padded.shape, patch, step)
    n_tiles = int(np.prod([len(s) for s in starts]))
    logger.debug(
        "sliding window: %d tiles of %s, %d mirror variants, %d folds",
        n_tiles,
        tuple(patch),
        len(combos),
        len(networks),
    )
    with torch.inference_mode(), autocast:
        for corner in itertools.product(*starts):
            box = tuple(slice(c, c + p) for c, p in zip(corner, patch))
            tile = padded[box][None, None]
            variants = torch.cat(
                [torch.flip(tile, [a + 2 for a in c]) if c else tile for c in combos]
            )
            total = None
            for network in networks:
                for first in range(0, len(combos), per_batch):
                    out = network(variants[first : first + per_batch]).float()
                    for j, combo in enumerate(combos[first : first + per_batch]):
                        one = torch.flip(out[j], [a + 1 for a in combo]) if combo else out[j]
                        total = one if total is None else total.add_(one)
            if logits is None:
                heads = total.shape[0]
                logits = torch.zeros((heads, *padded.shape), dtype=torch.float32, device=device)
                norm = torch.zeros(padded.shape, dtype=torch.float32, device=device)
            total.mul_(weight / (len(combos) * len(networks)))
            logits[(slice(None), *box)] += total
            norm[box] += weight
        logits /= norm
    unpad = tuple(slice(a, a + s) for (a, _), s in zip(pads, image.shape))
    return logits[(slice(None), *unpad)]
