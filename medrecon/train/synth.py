"""Images synthesised from label maps (the generative model of SynthSeg: Billot et al.,
Medical Image Analysis 2023), so that one labelled subject yields images of any
contrast.

A *tissue map* is the source label map with every structure kept apart (all 59
TotalSegmentator classes, not only the ones the pipeline predicts), and the
unlabelled voxels split into intensity clusters of the real image (air, fat, soft
tissue, bone...) so that a synthetic image has structure beyond the labelled organs.

A synthetic image draws one Gaussian per tissue class (mean uniform in [0, 1],
standard deviation uniform up to ``std_max``), samples every voxel from its class,
blurs it a little (partial volume) and rescales it to [0, 1]. Tissue 0 is the darkest
cluster and the padding: air, which is the darkest part of both a windowed CT and a
percentile-normalised MR, so its mean is drawn from [0, ``dark_max``] (with
probability ``dark_prob``; otherwise like any other class).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from medrecon.errors import InputError

__all__ = [
    "CLUSTER_BASE",
    "gaussian_blur_axes",
    "intensity_clusters",
    "render",
    "sample_mixture",
    "synthesise",
    "tissue_map",
]

logger = logging.getLogger(__name__)

#: Tissue values of the unlabelled clusters above the darkest: CLUSTER_BASE + 1, + 2...
#: Source label values must stay below it.
CLUSTER_BASE = 240


def intensity_clusters(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    """Centres (ascending) of a 1-D k-means of ``values``, started at their quantiles."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return np.zeros(0)
    # A subsample finds the same centres; the whole image would cost seconds.
    if values.size > 200_000:
        values = values[np.random.default_rng(0).choice(values.size, 200_000, replace=False)]
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        edges = (centres[1:] + centres[:-1]) / 2
        nearest = np.searchsorted(edges, values)
        new = np.array(
            [values[nearest == i].mean() if (nearest == i).any() else centres[i] for i in range(k)]
        )
        if np.allclose(new, centres):
            break
        centres = np.sort(new)
    return centres


def tissue_map(image: np.ndarray, source: np.ndarray, clusters: int) -> np.ndarray:
    """uint8 tissue classes on ``image``'s grid: ``source`` label values where labelled;
    elsewhere the ``clusters`` intensity clusters of the unlabelled voxels, the darkest
    as 0 and the others as ``CLUSTER_BASE + 1``... in order of intensity."""
    if source.shape != image.shape:
        raise InputError(f"tissue map: image {image.shape} and labels {source.shape} differ")
    if source.size and int(source.max()) >= CLUSTER_BASE:
        raise InputError(
            f"label synthesis supports source label values below {CLUSTER_BASE}; "
            f"this label map holds {int(source.max())}"
        )
    if not 1 <= clusters <= 255 - CLUSTER_BASE:
        raise InputError(f"synth_clusters must be 1..{255 - CLUSTER_BASE}, got {clusters}")
    tissue = source.astype(np.uint8)
    free = source == 0
    centres = intensity_clusters(image[free], clusters)
    if centres.size:
        nearest = np.searchsorted((centres[1:] + centres[:-1]) / 2, image[free])
        tissue[free] = np.where(nearest == 0, 0, CLUSTER_BASE + nearest).astype(np.uint8)
    return tissue


def sample_mixture(
    n: int,
    rng: np.random.RandomState,
    *,
    std_max: float = 0.08,
    dark_max: float = 0.1,
    dark_prob: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(means, standard deviations) of ``n`` tissue classes: uniform in [0, 1] and
    [0, ``std_max``]; class 0 (air) with probability ``dark_prob`` dark, in
    [0, ``dark_max``], else drawn like the others (so that "darkest" never means
    "outside the body": an organ may be as dark as air, as spleen and kidneys are
    on some MR sequences)."""
    means = rng.uniform(0.0, 1.0, n)
    stds = rng.uniform(0.0, std_max, n)
    if rng.uniform() < dark_prob:
        means[0] = rng.uniform(0.0, dark_max)
        stds[0] = rng.uniform(0.0, min(std_max, dark_max / 2))
    return means, stds


def render(tissue: Any, means, stds, *, seed: int = 0, blur: float = 0.0) -> Any:
    """Every voxel drawn from its class's Gaussian, blurred by ``blur`` voxels (partial
    volume), then rescaled to [0, 1] (torch float32, the shape of ``tissue``)."""
    import torch

    t = torch.as_tensor(tissue).long()
    mu = torch.as_tensor(np.asarray(means), dtype=torch.float32)
    sd = torch.as_tensor(np.asarray(stds), dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(seed))
    image = mu[t] + sd[t] * torch.randn(t.shape, generator=gen)
    if blur > 0.25:
        image = gaussian_blur_axes(image, (blur, blur, blur))
    lo, hi = image.min(), image.max()
    return ((image - lo) / (hi - lo).clamp(min=1e-6)).float()


def synthesise(
    tissue: Any,
    rng: np.random.RandomState,
    *,
    std_max: float = 0.08,
    dark_max: float = 0.1,
    dark_prob: float = 1.0,
    blur_max: float = 1.0,
) -> Any:
    """A synthetic image (torch float32, same shape as ``tissue``) in [0, 1]: a random
    mixture (:func:`sample_mixture`) rendered with a random blur (:func:`render`)."""
    import torch

    n = int(torch.as_tensor(tissue).max()) + 1
    means, stds = sample_mixture(n, rng, std_max=std_max, dark_max=dark_max, dark_prob=dark_prob)
    seed = int(rng.randint(2**31))
    return render(tissue, means, stds, seed=seed, blur=float(rng.uniform(0.0, blur_max)))


def gaussian_blur_axes(image: Any, sigmas) -> Any:
    """Separable Gaussian blur of a (C, X, Y, Z) tensor; one sigma (voxels) per axis,
    0 = leave that axis; edges are replicated (no dark rim)."""
    import torch
    import torch.nn.functional as F

    out = image.float()
    for axis, sigma in enumerate(sigmas):
        if sigma <= 0:
            continue
        radius = max(1, int(np.ceil(3 * sigma)))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel /= kernel.sum()
        moved = out.movedim(axis + 1, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        flat = F.pad(flat, (radius, radius), mode="replicate")
        flat = F.conv1d(flat, kernel.view(1, 1, -1))
        out = flat.reshape(shape).movedim(-1, axis + 1)
    return out
