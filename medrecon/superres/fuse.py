"""One volume from several stacks on one grid, each weighted by how well it resolves each direction.

A thick stack is sharp in-plane and blurred through-plane: at spatial frequency
``k`` (cycles/mm, RAS) stack ``i`` passes ``H_i(k) = P_i(k . n_i) S_i(k . n_i)``,
where ``n_i`` is its through-plane unit vector, ``P_i`` the Fourier transform of its
slice profile (``sinc(T u)`` for a box of width ``T``, ``exp(-2 pi^2 sigma^2 u^2)`` for
a Gaussian) and ``S_i(u) = 1 / (1 + (2 s u)^8)`` the sampling limit of slices ``s`` mm
apart (what lies past their Nyquist frequency ``1/(2s)`` is aliased, not resolved).
The fused spectrum is ``sum_i W_i(k) Y_i(k)`` with

    W_i = (|H_i|^2 + eps / N) / (sum_j |H_j|^2 + eps),

which sum to 1 at every frequency, so a constant image (k = 0) and an image all
stacks agree on come back exactly; where no stack resolves ``k`` the stacks share it
equally.

Partial coverage: each stack's coverage mask is feathered to ``c_i`` in [0, 1] (0
outside its slices, a linear ramp ``feather_mm`` wide inside). Every subset ``S`` of
stacks that meets somewhere is fused with the weights of that subset alone, and the
subset results are blended by ``m_S = prod_{i in S} c_i prod_{j not in S} (1 - c_j)``
(normalised), so where one stack covers alone the output is that stack, and weights
change smoothly in space: no seams at the edge of a stack.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np

from medrecon.superres.grid import OutputGrid
from medrecon.superres.profile import SliceProfile

__all__ = ["EPSILON", "fuse", "spectral_weights", "transfer_function"]

log = logging.getLogger(__name__)

#: Regulariser of the weights: where every stack's |H|^2 is below it, stacks share equally.
EPSILON = 1e-3
#: Most stacks fused by subsets (2^N - 1 of them); more is refused, not slowed down.
MAX_STACKS = 8


def transfer_function(profile: SliceProfile, u: np.ndarray) -> np.ndarray:
    """``H(u)`` at through-plane frequencies ``u`` (cycles/mm): profile times sampling limit."""
    u = np.asarray(u, dtype=np.float32)
    if profile.kind == "box":
        p = np.sinc(np.float32(profile.thickness) * u)
    else:
        p = np.exp(np.float32(-2.0 * np.pi**2 * profile.sigma**2) * u * u)
    s = 1.0 / (1.0 + (np.float32(2.0 * profile.spacing) * u) ** 8)
    return (p * s).astype(np.float32, copy=False)


def _index_directions(directions: Sequence[np.ndarray], grid: OutputGrid) -> list[np.ndarray]:
    """Each RAS unit direction in grid-voxel units: ``k . n = f . (A^-1 n)`` for index
    frequencies ``f`` (cycles/voxel), since ``k = A^-T f``."""
    inv = np.linalg.inv(np.asarray(grid.affine, dtype=np.float64)[:3, :3])
    out = []
    for n in directions:
        n = np.asarray(n, dtype=np.float64).reshape(3)
        norm = np.linalg.norm(n)
        if not norm > 0:
            raise ValueError(f"direction {n} is not a vector")
        out.append(inv @ (n / norm))
    return out


def _through_plane(d: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``f . d`` on the rfftn frequency grid of ``shape`` (cycles/mm along the direction)."""
    f0 = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None, None]
    f1 = np.fft.fftfreq(shape[1]).astype(np.float32)[None, :, None]
    f2 = np.fft.rfftfreq(shape[2]).astype(np.float32)[None, None, :]
    return f0 * np.float32(d[0]) + f1 * np.float32(d[1]) + f2 * np.float32(d[2])


def _power(profile: SliceProfile, d: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    h = transfer_function(profile, _through_plane(d, shape))
    return h * h


def spectral_weights(
    directions: Sequence[np.ndarray],
    profiles: Sequence[SliceProfile],
    grid: OutputGrid,
    *,
    epsilon: float = EPSILON,
) -> np.ndarray:
    """``W_i`` on ``grid``'s rfftn frequency grid, shape ``(N, n0, n1, n2 // 2 + 1)``, float32."""
    dirs = _index_directions(directions, grid)
    power = np.stack([_power(p, d, grid.shape) for p, d in zip(profiles, dirs)])
    power += np.float32(epsilon / len(dirs))
    power /= power.sum(axis=0, keepdims=True)
    return power


def _feather(mask: np.ndarray, width_vox: np.ndarray) -> np.ndarray:
    """``mask`` as a weight: 0 outside, rising linearly to 1 over ``width_vox`` inside (uint8)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if mask.all():
        return np.full(mask.shape, 255, np.uint8)
    size = [max(1, int(np.rint(2 * w)) | 1) for w in width_vox]
    # The box mean is 1/2 at a straight edge and 1 at half a window inside; 2m - 1
    # is a ramp from the edge inward, and times the mask it is 0 wherever data ends.
    m = ndimage.uniform_filter(mask.astype(np.float32), size=size, mode="nearest")
    m = np.clip(2.0 * m - 1.0, 0.0, 1.0, out=m)
    m *= mask
    return np.round(m * 255.0).astype(np.uint8)


def _blend(weights: Sequence[np.ndarray], subset: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """``m_S = prod_{i in S} c_i prod_{j not in S} (1 - c_j)`` into ``out`` (float32)."""
    out.fill(1.0)
    scale = np.float32(1.0 / 255.0)
    for j, w in enumerate(weights):
        if j in subset:
            np.multiply(out, w, out=out)
            out *= scale
        else:
            np.multiply(out, 255 - w, out=out)  # uint8 arithmetic, then float32 product
            out *= scale
    return out


def _subsets(weights: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
    """The subsets ``S`` whose ``m_S`` is non-zero somewhere: at a voxel, those between the
    stacks at full weight (``c = 1``) and the stacks with any weight (``c > 0``)."""
    n = len(weights)
    code = np.zeros(weights[0].shape, np.uint16)  # bits 0..n-1: c > 0; bits n..2n-1: c = 1
    for i, w in enumerate(weights):
        code |= (w > 0).astype(np.uint16) << i
        code |= (w == 255).astype(np.uint16) << (n + i)
    counts = np.bincount(code.ravel(), minlength=1 << (2 * n))
    found: set[tuple[int, ...]] = set()
    for value in np.flatnonzero(counts):
        some, full = int(value) & ((1 << n) - 1), int(value) >> n
        free = [i for i in range(n) if some >> i & 1 and not full >> i & 1]
        fixed = [i for i in range(n) if full >> i & 1]
        for r in range(len(free) + 1):
            for extra in itertools.combinations(free, r):
                if fixed or extra:
                    found.add(tuple(sorted((*fixed, *extra))))
    return sorted(found, key=lambda s: (len(s), s))


def _blend_subsets(arrays, weights, subsets, profiles, dirs, epsilon) -> np.ndarray:
    """``sum_S m_S z_S / sum_S m_S`` over the subsets, with ``z_S`` each subset's fusion."""
    from scipy import fft

    shape = arrays[0].shape
    spectra: dict[int, np.ndarray] = {}
    out = np.zeros(shape, np.float32)
    blend = np.empty(shape, np.float32)
    for subset in subsets:
        if not _blend(weights, subset, blend).any():
            continue
        if len(subset) == 1:
            blend *= arrays[subset[0]]
        else:
            for i in subset:
                if i not in spectra:
                    spectra[i] = fft.rfftn(arrays[i], workers=1)
            power = [_power(profiles[i], dirs[i], shape) for i in subset]
            denom = sum(power) + np.float32(epsilon)
            acc = np.zeros_like(spectra[subset[0]])
            for i, pw in zip(subset, power):
                pw += np.float32(epsilon / len(subset))
                pw /= denom
                acc += pw * spectra[i]
            del power, denom
            blend *= fft.irfftn(acc, s=shape, workers=1)
            del acc
        out += blend
        log.debug("fused subset %s", subset)
    del spectra
    # The m_S of all subsets sum to 1 - prod_j (1 - c_j): every stack's absence at once.
    total = _blend(weights, (), blend)
    np.subtract(1.0, total, out=total)
    empty = total <= 1e-6
    np.divide(out, total, out=out, where=~empty)
    if empty.any():
        # Where no stack has data, the mean of the stacks' (extrapolated) values fills in.
        log.info("%d grid voxels lie outside every stack", int(empty.sum()))
        out[empty] = np.mean([a[empty] for a in arrays], axis=0)
    return out


def fuse(
    volumes: Sequence[np.ndarray | object],
    directions: Sequence[np.ndarray],
    profiles: Sequence[SliceProfile],
    grid: OutputGrid,
    coverage: Sequence[np.ndarray] | None = None,
    *,
    epsilon: float = EPSILON,
    feather_mm: float | None = None,
) -> tuple[np.ndarray, dict[str, object]]:
    """Fuse stacks already on ``grid`` (Volumes or arrays) into one float32 array.

    ``directions[i]`` is stack ``i``'s through-plane unit vector in RAS and
    ``profiles[i]`` its slice profile; ``coverage[i]`` (optional) a boolean mask on the
    grid where stack ``i`` has data. ``feather_mm`` (default: the largest slice
    spacing) is how far inside its coverage a stack reaches full weight. Returns
    the array and a JSON-ready summary for the sidecar.
    """
    n = len(volumes)
    if not (n == len(directions) == len(profiles)) or n == 0:
        raise ValueError("fuse needs as many directions and profiles as volumes, at least one")
    if n > MAX_STACKS:
        raise ValueError(f"fuse takes at most {MAX_STACKS} stacks, got {n}")
    arrays = [np.asarray(getattr(v, "array", v), dtype=np.float32) for v in volumes]
    for i, a in enumerate(arrays):
        if a.shape != tuple(grid.shape):
            raise ValueError(f"stack {i} has shape {a.shape}, not the grid's {grid.shape}")
    if coverage is None:
        coverage = [np.ones(grid.shape, bool)] * n
    if len(coverage) != n:
        raise ValueError("fuse needs one coverage mask per volume")
    if feather_mm is None:
        feather_mm = max(p.spacing for p in profiles)
    width = float(feather_mm) / np.asarray(grid.spacing)
    weights = [_feather(c, width) for c in coverage]
    dirs = _index_directions(directions, grid)
    shape = tuple(grid.shape)
    info: dict[str, object] = {
        "method": "spectral: W_i = (|H_i|^2 + eps/N) / (sum_j |H_j|^2 + eps), "
        "H = profile transform x sampling limit along each stack's through-plane direction; "
        "partial coverage blended by feathered masks per subset of stacks",
        "epsilon": float(epsilon),
        "feather_mm": float(feather_mm),
        "coverage_fraction": [float(np.count_nonzero(c)) / c.size for c in coverage],
    }
    if n == 1:
        info["mean_spectral_weight"] = [1.0]
        return arrays[0].copy(), info

    subsets = _subsets(weights)
    out = _blend_subsets(arrays, weights, subsets, profiles, dirs, epsilon)
    # Same spacing, so the same frequency range, on a small grid: the mean is cheap.
    small = OutputGrid(tuple(min(k, 64) for k in shape), grid.affine)  # type: ignore[arg-type]
    w = spectral_weights(directions, profiles, small, epsilon=epsilon)
    info["mean_spectral_weight"] = [float(x) for x in w.mean(axis=(1, 2, 3))]
    return out, info
