"""Parity with MONAI: real model-zoo bundles, run by medrecon and by ``monai.bundle run``.

Each bundle's own config files (``tests/data/bundles/<name>/configs``, see the
NOTICE there) are run twice on the same cropped real image: by medrecon's bundle
engine (through ``build_engine``) and by ``python -m monai.bundle run`` in a
subprocess, with ``dataset_dir``/``datalist``/``output_dir`` overridden on the
command line as the zoo's READMEs describe. The label maps must agree on at
least 99 % of voxels, and the reference must hold more than one label.

Weights are made from each bundle's ``network_def`` with a fixed seed. Random
weights tend to give one class everywhere, so the final layer (the last bias
with one entry per class, and its weight) is tweaked deterministically: bias
zero, weight x10 - the same file feeds both runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.foreign.bundle import load_bundle
from medrecon.io.nifti import read_nifti
from medrecon.models.engines import build_engine

ZOO = Path(__file__).parent / "data" / "bundles"
SEED = 0

#: bundle -> (image under shared data, voxel box to crop, extra `monai.bundle run` args)
CASES = {
    # CT, UNet, Spacingd 1.5x1.5x2, Invertd (bilinear) before AsDiscreted
    "spleen_ct_segmentation": ("ct-abdomen/ct.nii.gz", ((8, 56), (18, 58), (76, 112)), []),
    # CT, SegResNet with 105 classes; ScaleIntensityd (refused by the old mapping)
    "wholeBody_ct_segmentation": ("ct-abdomen/ct.nii.gz", ((8, 56), (18, 58), (76, 112)), []),
    # MR stored LPS, 0.5 mm resampling, KeepLargestConnectedComponentd; datalist from a csv
    "prostate_mri_anatomy": (
        "mr-abdomen/mr.nii.gz",
        ((46, 70), (34, 58), (5, 15)),
        ["--datalist", "['{image}']"],
    ),
    # the zoo's YAML template: SimpleInferer, no spatial steps, no Invertd
    "segmentation_template": (
        "ct-abdomen/ct.nii.gz",
        ((8, 56), (18, 58), (78, 110)),
        ["--dataset_dir", "{data}"],
    ),
}


def _weights(bundle: Path) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(next((bundle / "configs").glob("inference.*"))))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(SEED)
    state = parser.get_parsed_content("network_def").state_dict()
    bias = [k for k, v in state.items() if k.endswith("bias") and v.ndim == 1][-1]
    weight = bias[: -len("bias")] + "weight"
    state[bias] = torch.zeros_like(state[bias])
    state[weight] = state[weight] * 10.0
    torch.save(state, bundle / "models" / "model.pt")


def _crop(source: Path, box, dest: Path) -> Path:
    img = nib.load(source)
    start = np.array([a for a, _ in box], dtype=float)
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ start + img.affine[:3, 3]
    array = np.asarray(img.dataobj)[tuple(slice(a, b) for a, b in box)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine, img.header), dest)
    return dest


@pytest.fixture(scope="session")
def zoo_case(tmp_path_factory, shared_data):
    """name -> (bundle folder, cropped image): weights and crops made once per session."""
    made: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            bundle = root / "bundle"
            shutil.copytree(ZOO / name, bundle)
            (bundle / "models").mkdir()
            _weights(bundle)
            source, box, _ = CASES[name]
            made[name] = bundle, _crop(shared_data / source, box, root / "data" / "case.nii.gz")
        return made[name]

    return get


def _monai_run(bundle: Path, image: Path, out: Path, extra: list[str]) -> nib.Nifti1Image:
    config = next((bundle / "configs").glob("inference.*"))
    fill = {"image": str(image), "data": str(image.parent)}
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(config),
        "--bundle_root", str(bundle),
        "--dataset_dir", str(image.parent.parent),
        "--datalist", f"['{image}']",
        "--output_dir", str(out),
        "--dataloader#num_workers", "0",
        *[arg.format(**fill) for arg in extra],
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    written = sorted(out.rglob("*.nii.gz"))
    assert len(written) == 1, written
    return nib.load(written[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_medrecon_matches_monai_bundle_run(name: str, zoo_case, tmp_path: Path) -> None:
    pytest.importorskip("fire", reason="`monai.bundle run` needs the fire package")
    pytest.importorskip("ignite", reason="`monai.bundle run` needs pytorch-ignite")
    bundle, image = zoo_case(name)
    reference = _monai_run(bundle, image, tmp_path / "out", CASES[name][2])

    volume = read_nifti(image)
    seg = build_engine(load_bundle(bundle, trust=True), device="cpu")(volume)
    ours = seg.labels.array
    np.testing.assert_allclose(reference.affine, volume.affine, atol=1e-4)
    # Bilinear Invertd leaves float residue (1e-14) on the label values: round it.
    ref = np.rint(np.asarray(reference.dataobj)).reshape(ours.shape).astype(int)

    agreement = float((ref == ours).mean())
    present = sorted(np.unique(ref).tolist())
    # Shown with -s: the parity figure for docs/bundles.md.
    print(f"\n{name}: agreement {agreement:.4%} over {ref.size} voxels; labels {present}")  # noqa: T201
    assert len(present) > 1, "the reference is trivial (one label)"
    assert agreement >= 0.99
    assert set(np.unique(ours).tolist()) <= {0, *seg.pipeline.label_names}


@pytest.mark.parametrize("name", ["wholeBody_ct_segmentation", "prostate_mri_anatomy"])
def test_medrecon_run_with_a_zoo_bundle_writes_every_output(name: str, zoo_case, tmp_path):
    import slicerio

    from medrecon.export.meshio import mesh_file_name
    from medrecon.models.ref import ModelRef
    from medrecon.study.runner import run_study

    bundle, image = zoo_case(name)
    out = tmp_path / "out"
    result = run_study(image, out, model=ModelRef(str(bundle), trust=True), force=True)
    assert result.status == "complete"
    for output in ("labels.nii.gz", "segmentation.seg.nrrd", "scene.mrml", "stats.csv"):
        assert output in result.outputs
    assert "preview.png" in result.outputs
    # The labels the engine gives on the same input, on the input's own grid.
    seg = build_engine(load_bundle(bundle, trust=True), device="cpu")(read_nifti(image))
    written = nib.load(out / "labels.nii.gz")
    np.testing.assert_array_equal(np.asarray(written.dataobj), seg.labels.array)
    np.testing.assert_allclose(written.affine, nib.load(image).affine, atol=1e-5)
    names = {
        s["name"]
        for s in slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))["segments"]
    }
    assert names == set(result.labels_found) and names
    # One mesh per label found, named as mesh_file_name spells a label ("central gland").
    meshes = {p.name for p in (out / "meshes").glob("*.stl")}
    found = [lab for lab in seg.pipeline.labels if lab.name in names]
    assert meshes == {mesh_file_name(lab, "stl") for lab in found}
