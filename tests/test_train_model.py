"""The shipped abdomen-ct model on the real CT: every organ found, held-out Dice sane."""

from __future__ import annotations

import importlib.util

from train_helpers import ROOT

#: Floor per organ on the held-out slabs (docs/models.md gives the measured figures).
MIN_DICE = 0.75


def _heldout():
    spec = importlib.util.spec_from_file_location(
        "heldout", ROOT / "scripts" / "abdomen_ct_heldout.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.heldout_dice


def test_shipped_weights_are_pinned_and_small():
    from medrecon.pipeline.registry import load_pipeline

    pipeline = load_pipeline("abdomen-ct")  # verifies the SHA-256
    assert pipeline.weights.sha256
    assert pipeline.weights.path.stat().st_size < 30 * 2**20


def test_shipped_model_finds_every_organ_on_held_out_slabs(shared_data):
    scores, _ = _heldout()()
    low = {name: round(d, 3) for name, (d, n_ref, _) in scores.items() if n_ref and d < MIN_DICE}
    assert not low, f"held-out Dice below {MIN_DICE}: {low}"
    assert all(n_ref > 0 and n_pred > 0 for _, n_ref, n_pred in scores.values())
