"""Cases on the model grid: the image through the pipeline's own preprocessing
(:func:`medrecon.pipeline.preprocess.prepare_input`, exactly what inference runs)
and the label map resampled, nearest neighbour, onto the grid that produced.

Voxels whose labels must not reach the loss (held-out validation slabs) carry
:data:`IGNORE` in the training label; ``val_mask`` marks the voxels validation
Dice is computed on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from medrecon.errors import InputError
from medrecon.pipeline.config import Pipeline
from medrecon.train.dataset import Case, Cohort, ValidationSpec, apply_lookup, label_lookup
from medrecon.volume import Volume

__all__ = ["IGNORE", "PreparedCase", "check_grids", "prepare_case", "prepare_cohort", "split"]

logger = logging.getLogger(__name__)

#: Label value of voxels the loss ignores.
IGNORE = 255
#: Largest difference (mm) between image and label affines that still counts as one grid.
_GRID_TOL_MM = 1e-3


@dataclass
class PreparedCase:
    """A case on the model grid: image (1, X, Y, Z) float32, label (1, X, Y, Z) uint8
    with :data:`IGNORE` where held out, and the held-out mask (None: nothing held out)."""

    id: str
    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    val_mask: np.ndarray | None
    #: The full reference (X, Y, Z) in pipeline values, held-out voxels included.
    reference: np.ndarray
    #: (1, X, Y, Z) uint8 tissue classes for synthesis (medrecon.train.synth), or None.
    tissue: np.ndarray | None = None
    #: Contrast-phase group -> tissue (source label) values (medrecon.train.phases).
    phase_groups: dict[str, tuple[int, ...]] | None = None

    @property
    def train_voxels(self) -> int:
        return int((self.label != IGNORE).sum())


def check_grids(case: Case, image: Volume, label: Volume) -> None:
    """Raise when the label map does not lie on the image's voxel grid."""
    if image.array.ndim != 3:
        raise InputError(f"case {case.id}: image {case.image} is not 3D (shape {image.shape})")
    if image.spatial_shape != label.spatial_shape or label.array.ndim != 3:
        raise InputError(
            f"case {case.id}: image {case.image} has shape {image.shape} but label "
            f"{case.label} has {label.shape}; the label map must be on the image's grid"
        )
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in image.spatial_shape])).reshape(3, -1).T
    gap = np.abs(image.voxel_to_ras(corners) - label.voxel_to_ras(corners)).max()
    if gap > _GRID_TOL_MM:
        raise InputError(
            f"case {case.id}: image {case.image} and label {case.label} have different "
            f"geometry (corners {gap:.3f} mm apart); resample the label onto the image grid"
        )


def _nearest(label: np.ndarray, label_affine: np.ndarray, affine: np.ndarray, shape) -> np.ndarray:
    """``label`` sampled at the voxel centres of the grid ``affine``/``shape`` (0 outside)."""
    from scipy import ndimage

    m = np.linalg.inv(label_affine) @ affine
    out = ndimage.affine_transform(
        label, m[:3, :3], offset=m[:3, 3], output_shape=shape, order=0, mode="constant", cval=0
    )
    return out.astype(np.uint8)


def _slab_mask(affine: np.ndarray, shape, native: Volume, spec: ValidationSpec) -> np.ndarray:
    """Voxels of the held-out axial slabs, numbered from the native scan's lowest S."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in native.spatial_shape])).reshape(3, -1).T
    s_min = native.voxel_to_ras(corners)[:, 2].min()
    ijk = np.indices(shape, dtype=np.float64)
    s = sum(affine[2, i] * ijk[i] for i in range(3)) + affine[2, 3]
    slab = np.floor((s - s_min + 0.5 * abs(native.spacing[2])) / spec.slab_mm).astype(np.int64)
    return (slab % spec.every) == spec.offset


def prepare_case(
    case: Case,
    pipeline: Pipeline,
    lookup: dict[int, int],
    spec: ValidationSpec,
    *,
    whole: bool,
    tissue_clusters: int = 0,
    source_labels: dict[int, str] | None = None,
) -> PreparedCase:
    """Read, check and preprocess one case. ``whole``: the case is a validation case.
    ``tissue_clusters`` > 0 also builds the tissue map (every source label kept apart,
    the unlabelled voxels in that many intensity clusters) for synthesis and phases."""
    from medrecon.io import load
    from medrecon.pipeline.preprocess import prepare_input

    image = load(case.image)
    label = load(case.label)
    check_grids(case, image, label)
    if label.array.dtype.kind == "f" and not np.all(np.mod(label.array, 1) == 0):
        raise InputError(f"case {case.id}: label {case.label} holds non-integer values")
    mapped = apply_lookup(label.array, lookup, case)
    if mapped.max() > pipeline.max_label:
        raise InputError(f"case {case.id}: label values above {pipeline.max_label}")
    model_in = prepare_input(image, pipeline.preprocess)
    shape = model_in.spatial_shape
    target = _nearest(mapped, label.affine, model_in.affine, shape)
    if whole:
        mask = np.ones(shape, dtype=bool)
    elif spec.slab_mm is not None:
        mask = _slab_mask(model_in.affine, shape, image, spec)
    else:
        mask = None
    train_label = target if (whole or mask is None) else np.where(mask, IGNORE, target)
    image_array = model_in.tensor[0].numpy()
    tissue = groups = None
    if tissue_clusters > 0 and not whole:
        from medrecon.train.phases import phase_groups
        from medrecon.train.synth import CLUSTER_BASE, tissue_map

        # Checked here, before the uint8 grid would wrap values above 255.
        if label.array.max() >= CLUSTER_BASE:
            raise InputError(
                f"case {case.id}: label {case.label}: synthesis supports source label "
                f"values below {CLUSTER_BASE}; this map holds {int(label.array.max())}"
            )
        source = label.array.astype(np.uint8)
        source_grid = _nearest(source, label.affine, model_in.affine, shape)
        tissue = tissue_map(image_array[0], source_grid, tissue_clusters)[None]
        groups = phase_groups(source_labels) if source_labels else {}
    return PreparedCase(
        id=case.id,
        image=image_array,
        label=train_label.astype(np.uint8)[None],
        affine=model_in.affine,
        val_mask=mask,
        reference=target,
        tissue=tissue,
        phase_groups=groups,
    )


def split(cohort: Cohort, seed: int) -> tuple[list[Case], list[Case]]:
    """(training cases, whole validation cases) under the cohort's validation spec."""
    spec = cohort.validation
    ids = {c.id for c in cohort.cases}
    if unknown := set(spec.cases) - ids:
        raise InputError(f"dataset {cohort.source}: validation cases {sorted(unknown)} not found")
    held = set(spec.cases)
    if spec.fraction > 0:
        rng = np.random.default_rng(seed)
        n = max(1, round(spec.fraction * len(cohort.cases)))
        held |= {cohort.cases[i].id for i in rng.permutation(len(cohort.cases))[:n]}
    train = [c for c in cohort.cases if c.id not in held]
    if not train:
        raise InputError(f"dataset {cohort.source}: validation holds out every case")
    return train, [c for c in cohort.cases if c.id in held]


def prepare_cohort(
    cohort: Cohort, pipeline: Pipeline, seed: int, *, tissue_clusters: int = 0
) -> tuple[list[PreparedCase], list[PreparedCase]]:
    """Every case read, checked and preprocessed before any training step.

    Returns (training cases, validation cases); with slab hold-out a case is in
    both lists (the same object): its ``label`` ignores the slabs and validation
    reads the reference there.
    """
    lookup = label_lookup(cohort, pipeline)
    train_cases, val_cases = split(cohort, seed)
    train = [
        prepare_case(
            c,
            pipeline,
            lookup,
            cohort.validation,
            whole=False,
            tissue_clusters=tissue_clusters,
            source_labels=cohort.source_labels,
        )
        for c in train_cases
    ]
    val = [prepare_case(c, pipeline, lookup, cohort.validation, whole=True) for c in val_cases]
    for case in train:
        if case.train_voxels == 0 or not (case.label[case.label != IGNORE] > 0).any():
            raise InputError(f"case {case.id}: no labelled voxel left to train on")
    if cohort.validation.slab_mm is not None:
        val = [*val, *train]
    _log_presence(pipeline, train, val)
    return train, val


def _log_presence(pipeline: Pipeline, train: list[PreparedCase], val: list[PreparedCase]) -> None:
    for lab in pipeline.labels:
        n_train = sum(int((c.label == lab.value).sum()) for c in train)
        if n_train == 0:
            logger.warning("label %s has no training voxel in this dataset", lab.name)
        logger.info("label %s: %d training voxels", lab.name, n_train)
