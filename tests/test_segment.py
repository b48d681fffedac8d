"""The engine end to end: preprocessing and the way back to the native grid,
a network trained here on a synthetic shape, TTA, coarse-to-fine, the OOM ladder."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from pipeline_helpers import ball_ct, ellipsoid, threshold_network

from medrecon import Volume
from medrecon.errors import InferenceError, InputError
from medrecon.labels import Label
from medrecon.models.segment import segment
from medrecon.pipeline.config import (
    CoarseSpec,
    InferenceSpec,
    IntensitySpec,
    NetworkSpec,
    Pipeline,
    PreprocessSpec,
    WeightsSpec,
)
from medrecon.pipeline.device import DeviceChoice, resolve_device
from medrecon.pipeline.infer import Attempt, plan_attempts, run_ladder
from medrecon.pipeline.segment import Segmenter

SHAPE = (40, 36, 30)
MASK = ellipsoid(SHAPE, (20, 17, 14), (11, 8, 7))


def _rotation(deg_z: float, deg_x: float) -> np.ndarray:
    a, b = np.radians(deg_z), np.radians(deg_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _affine(direction: np.ndarray, spacing, origin=(-40.0, 25.0, 110.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing, dtype=float)
    affine[:3, 3] = origin
    return affine


ORIENTATIONS = {
    "RAS": np.eye(3),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "PIL (permuted)": np.array([[0, 0, -1], [-1, 0, 0], [0, -1, 0]], dtype=float),
    "oblique": _rotation(30, 20),
}


@pytest.fixture(scope="module")
def threshold_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "threshold.pt"
    torch.save(threshold_network().state_dict(), path)
    return path


def _pipeline(weights, spacing=None, crop=True, **kwargs) -> Pipeline:
    return Pipeline(
        name="threshold",
        modality="CT",
        labels=(Label(1, "ball", (255, 0, 0)),),
        preprocess=PreprocessSpec(
            spacing=spacing,
            intensity=IntensitySpec(mode="ct_window", window=(0.0, 1.0)),
            crop_foreground=crop,
        ),
        network=NetworkSpec("threshold", {"out_channels": 2}, factory=threshold_network),
        weights=WeightsSpec(weights, None),
        inference=kwargs.pop("inference", InferenceSpec(roi_size=(32, 32, 32), sw_batch_size=2)),
        **kwargs,
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
@pytest.mark.parametrize(
    ("native", "model"),
    [
        ((2.0, 2.0, 2.0), None),
        ((2.0, 2.0, 2.0), (1.0, 1.0, 1.0)),
        ((3.0, 3.0, 4.0), (1.5, 1.5, 2.0)),
    ],
)
@pytest.mark.parametrize("crop", [True, False])
def test_round_trip_is_exact_where_content_is_unchanged(
    threshold_weights, orientation, native, model, crop
):
    """Same or integer-refined model spacing: every native voxel centre is a model voxel
    centre, so the labels come back voxel for voxel (Dice 1.0)."""
    volume = Volume(MASK.astype(np.int16), _affine(ORIENTATIONS[orientation], native))
    seg = segment(volume, _pipeline(threshold_weights, model, crop), device="cpu")
    assert seg.labels.array.shape == SHAPE and seg.labels.array.dtype == np.uint8
    np.testing.assert_array_equal(seg.labels.affine, volume.affine)
    np.testing.assert_array_equal(seg.labels.array, MASK.astype(np.uint8))


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_round_trip_through_a_coarser_grid_lands_in_place(threshold_weights, orientation):
    """A coarser, non-integer model spacing loses detail at the edge only: high Dice and
    the same centroid in patient coordinates."""
    volume = Volume(MASK.astype(np.int16), _affine(ORIENTATIONS[orientation], (2.0, 2.0, 2.0)))
    seg = segment(volume, _pipeline(threshold_weights, (3.0, 3.0, 3.0)), device="cpu")
    labels = seg.labels.array == 1
    assert _dice(labels, MASK) > 0.93
    centroid = volume.voxel_to_ras(np.argwhere(labels).mean(axis=0))
    expected = volume.voxel_to_ras(np.argwhere(MASK).mean(axis=0))
    assert np.linalg.norm(centroid - expected) < 1.0  # mm


def test_probabilities_on_request(threshold_weights):
    volume = Volume(MASK.astype(np.float32), _affine(np.eye(3), (2.0, 2.0, 2.0)))
    seg = segment(volume, _pipeline(threshold_weights), device="cpu", probabilities=True)
    probs = seg.probabilities.array
    assert probs.shape == (*SHAPE, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=-1), seg.labels.array)
    assert seg.present_labels() == [seg.label_table[0]]


def test_tta_flips_keep_a_symmetric_answer(threshold_weights):
    volume = Volume(MASK.astype(np.int16), _affine(ORIENTATIONS["LPS"], (2.0, 2.0, 2.0)))
    spec = InferenceSpec(roi_size=(16, 16, 16), tta_flips=((0,), (1, 2)))
    seg = segment(volume, _pipeline(threshold_weights, inference=spec), device="cpu")
    np.testing.assert_array_equal(seg.labels.array, MASK.astype(np.uint8))


class _SideNet(torch.nn.Module):
    """Calls bright voxels label 1 in the low half of axis 0 and label 2 in the high
    half, like a network that tells a left kidney from a right one by its side."""

    def forward(self, x):
        n = x.shape[2]
        high = (torch.arange(n) >= n // 2).float().view(1, 1, n, 1, 1).expand_as(x)
        fg = (x > 0.5).float()
        return torch.cat([1 - fg, fg * (1 - high), fg * high], dim=1) * 10.0


def test_a_left_right_tta_pass_swaps_left_and_right_labels_back():
    """Two blobs mirrored across axis 0. A pass on the mirrored image calls each by the
    side it then lies on; flipped back, that name is the other side's, so without the
    swap the two passes cancel out, and with it TTA agrees with the plain pass."""
    from medrecon.pipeline.infer import predict_probabilities

    image = torch.zeros(1, 1, 20, 8, 8)
    image[:, :, 2:6, 2:6, 2:6] = 1.0
    image[:, :, 14:18, 2:6, 2:6] = 1.0
    cpu = resolve_device("cpu")
    plain = InferenceSpec(roi_size=(20, 8, 8))
    want, _ = predict_probabilities(_SideNet(), image, plain, cpu)
    assert want[1, 3, 3, 3] > 0.99 and want[2, 15, 3, 3] > 0.99
    flipped = InferenceSpec(roi_size=(20, 8, 8), tta_flips=((0,),))
    mixed, _ = predict_probabilities(_SideNet(), image, flipped, cpu)
    assert abs(float(mixed[1, 3, 3, 3]) - 0.5) < 0.01  # the unswapped passes cancel
    swap = InferenceSpec(
        roi_size=(20, 8, 8), tta_flips=((0,), (1,)), left_right_axis=0, left_right_pairs=((1, 2),)
    )
    got, _ = predict_probabilities(_SideNet(), image, swap, cpu)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_medrecon_engine_swaps_its_left_right_labels_under_tta(tmp_path):
    """End to end: a pipeline with kidney_left/kidney_right and a left-right TTA flip
    gives the plain pass's answer (the engine passes its label pairs and the model
    grid's left-right axis to the inference)."""
    from medrecon.pipeline.config import left_right_axis

    weights = tmp_path / "side.pt"
    torch.save(_SideNet().state_dict(), weights)
    image = np.zeros((20, 8, 8), dtype=np.float32)
    image[2:6, 2:6, 2:6] = image[14:18, 2:6, 2:6] = 1.0
    volume = Volume(image, _affine(np.eye(3), (2.0, 2.0, 2.0)))

    def pipeline(flips):
        return Pipeline(
            name="side",
            modality="CT",
            labels=(Label(1, "kidney_left", (0, 0, 255)), Label(2, "kidney_right", (255, 0, 0))),
            preprocess=PreprocessSpec(
                intensity=IntensitySpec(mode="ct_window", window=(0.0, 1.0)),
                crop_foreground=False,
            ),
            network=NetworkSpec("side", {}, factory=_SideNet),
            weights=WeightsSpec(weights, None),
            inference=InferenceSpec(roi_size=(20, 8, 8), tta_flips=flips),
        )

    want = segment(volume, pipeline(()), device="cpu").labels.array
    assert set(np.unique(want[:10])) == {0, 1} and set(np.unique(want[10:])) == {0, 2}
    got = segment(volume, pipeline(((0,),)), device="cpu").labels.array
    np.testing.assert_array_equal(got, want)
    assert left_right_axis("PIL") == 2
    with pytest.raises(ValueError, match="no left-right axis"):
        left_right_axis("SAP")


def test_coarse_to_fine_runs_the_fine_pass_on_the_organ_box(threshold_weights):
    shape = (80, 70, 50)
    mask = ellipsoid(shape, (60, 15, 30), (8, 6, 5))
    volume = Volume(mask.astype(np.int16), _affine(np.eye(3), (2.0, 2.0, 2.0)))
    pipeline = _pipeline(
        threshold_weights, crop=False, coarse=CoarseSpec(spacing=(6.0, 6.0, 6.0), margin_mm=8.0)
    )
    seg = segment(volume, pipeline, device="cpu")
    (start, stop) = seg.roi_box
    inside = np.argwhere(mask)
    assert np.all(inside.min(axis=0) >= start) and np.all(inside.max(axis=0) < stop)
    box_voxels = np.prod(np.subtract(stop, start))
    assert box_voxels < 0.15 * np.prod(shape)  # the fine pass saw a small part only
    np.testing.assert_array_equal(seg.labels.array, mask.astype(np.uint8))
    assert "coarse" in seg.timings


def test_coarse_pass_that_finds_nothing_falls_back_to_the_whole_volume(threshold_weights):
    volume = Volume(np.zeros(SHAPE, np.int16), _affine(np.eye(3), (2.0, 2.0, 2.0)))
    pipeline = _pipeline(threshold_weights, coarse=CoarseSpec(spacing=(6.0, 6.0, 6.0)))
    seg = segment(volume, pipeline, device="cpu")
    assert seg.roi_box is None and not seg.labels.array.any()
    assert any("coarse pass found no labelled voxels" in w for w in seg.warnings)


class _RunsOutOfMemoryOnBigBatches(torch.nn.Module):
    """The threshold network, but a batch of more than one window "does not fit"."""

    def __init__(self):
        super().__init__()
        self.inner = threshold_network()
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(int(x.shape[0]))
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("simulated: tried to allocate 20.00 GiB")
        return self.inner(x)


def test_out_of_memory_falls_back_to_smaller_batches(tmp_path, caplog):
    weights = tmp_path / "w.pt"
    torch.save(_RunsOutOfMemoryOnBigBatches().state_dict(), weights)
    pipeline = Pipeline(
        name="oom",
        modality="CT",
        labels=(Label(1, "ball", (255, 0, 0)),),
        preprocess=PreprocessSpec(intensity=IntensitySpec(mode="ct_window", window=(0.0, 1.0))),
        network=NetworkSpec("oom", {}, factory=_RunsOutOfMemoryOnBigBatches),
        weights=WeightsSpec(weights, None),
        inference=InferenceSpec(roi_size=(16, 16, 16), sw_batch_size=4),
    )
    volume = Volume(MASK.astype(np.int16), _affine(np.eye(3), (2.0, 2.0, 2.0)))
    segmenter = Segmenter(pipeline, device="cpu")
    with caplog.at_level(logging.WARNING):
        seg = segmenter(volume)
    np.testing.assert_array_equal(seg.labels.array, MASK.astype(np.uint8))
    assert segmenter.net.batches[0] == 4 and set(segmenter.net.batches[1:]) == {1}
    assert any("out of memory" in w and "1 window(s)" in w for w in seg.warnings)
    assert "retrying with" in caplog.text


def test_cuda_fallback_ladder_order():
    attempts = plan_attempts(DeviceChoice("cuda", "bfloat16"), sw_batch_size=4)
    assert attempts == [
        Attempt("cuda", "cuda", 4, "bfloat16"),
        Attempt("cuda", "cuda", 1, "bfloat16"),
        Attempt("cuda", "cpu", 1, "bfloat16"),
        Attempt("cpu", "cpu", 4, None),
    ]
    assert plan_attempts(DeviceChoice("cpu", None), 1) == [Attempt("cpu", "cpu", 1, None)]


def test_ladder_walks_down_and_reports():
    attempts = plan_attempts(DeviceChoice("cuda", "float16"), sw_batch_size=2)
    tried = []

    def run(attempt):
        tried.append(attempt)
        if attempt.device == "cuda":  # every GPU setting is "too big"
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "done"

    warnings: list[str] = []
    result, used = run_ladder(attempts, run, warnings)
    assert result == "done" and used == Attempt("cpu", "cpu", 2, None)
    assert tried == attempts and len(warnings) == 3

    def always(attempt):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(InferenceError, match="ran out of memory in every setting"):
        run_ladder(attempts, always)

    def broken(attempt):
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError, match="not a memory problem"):
        run_ladder(attempts, broken)


def test_device_resolution():
    choice = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None):
        expected = "mps" if torch.backends.mps.is_available() else "cpu"
    assert choice.device == expected
    assert resolve_device("cpu") == DeviceChoice("cpu", None)
    assert resolve_device("cpu", amp=True).amp_dtype == "bfloat16"
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")


def test_4d_volume_is_refused_with_advice(threshold_weights):
    volume = Volume(np.zeros((*SHAPE, 2), np.int16), np.eye(4))
    with pytest.raises(InputError, match="choose one frame first"):
        segment(volume, _pipeline(threshold_weights), device="cpu")


@pytest.mark.parametrize("orientation", ["LPS", "oblique"])
def test_network_trained_here_segments_a_new_volume(ball_pipeline, orientation):
    """A UNet trained in this test session on 2 mm patches finds a differently sized
    ball in a new volume of another spacing and orientation, via the YAML pipeline."""
    rng = np.random.default_rng(7)
    shape = (56, 48, 40)
    image, mask = ball_ct(shape, (30, 22, 19), (13, 9, 7), rng)
    volume = Volume(image, _affine(ORIENTATIONS[orientation], (1.6, 1.6, 2.5)))
    seg = segment(volume, ball_pipeline, device="cpu")
    assert seg.pipeline.name == "test-ball" and seg.device == "cpu"
    assert _dice(seg.labels.array == 1, mask) > 0.9
    assert set(np.unique(seg.labels.array)) <= {0, 1}


def test_labels_reach_the_scan_edge_beyond_the_last_model_voxel(threshold_weights):
    """41 voxels at 2 mm resampled to 3 mm: the model grid's last centre is 78 mm, the
    native one 80 mm. A structure touching that edge keeps its edge voxels (as Invertd)."""
    shape = (41, 20, 20)
    mask = np.zeros(shape, bool)
    mask[30:, 5:15, 5:15] = True
    volume = Volume(mask.astype(np.int16), _affine(np.eye(3), (2.0, 2.0, 2.0)))
    seg = segment(volume, _pipeline(threshold_weights, (3.0, 3.0, 3.0), crop=False), device="cpu")
    labels = seg.labels.array == 1
    assert labels[40, 6:14, 6:14].all()
    assert _dice(labels, mask) > 0.95
