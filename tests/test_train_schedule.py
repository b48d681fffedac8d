"""The learning-rate curve of ``medrecon train`` and what a resume changes in it."""

from __future__ import annotations

import math

import pytest

from medrecon.train.loop import TrainConfig
from medrecon.train.schedule import lr_factor, schedule_changes


def test_warmup_then_cosine_to_the_floor():
    config = TrainConfig(epochs=10, iterations_per_epoch=10, lr=1e-3, warmup_epochs=1, min_lr=1e-5)
    f = lr_factor(config)
    assert f(0) == pytest.approx(0.01)
    assert f(5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(10) == pytest.approx(1.0)
    floor = 1e-5 / 1e-3
    # Halfway through the decay (step 55 of 10..100): the mean of peak and floor.
    assert f(55) == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(floor)
    assert f(1000) == pytest.approx(floor)


def test_schedule_changes_name_the_setting_and_the_jump():
    saved = TrainConfig(epochs=300, iterations_per_epoch=50, lr=5e-4, warmup_epochs=2)
    stored = {
        "epochs": 300,
        "iterations_per_epoch": 50,
        "lr": 5e-4,
        "warmup_epochs": 2.0,
        "min_lr": 1e-5,
        "seed": 0,
    }
    assert schedule_changes(stored, saved, step=2500) == []
    # A new seed or a stored dict without schedule settings is no schedule change.
    assert schedule_changes({"seed": 7}, saved, step=2500) == []
    shorter = TrainConfig(epochs=160, iterations_per_epoch=50, lr=5e-4, warmup_epochs=2)
    changes = schedule_changes(stored, shorter, step=2500)
    assert changes[0] == "epochs 300 -> 160"
    before = 5e-4 * lr_factor(saved)(2500)
    after = 5e-4 * lr_factor(shorter)(2500)
    assert after < before
    assert changes[1] == f"learning rate at step 2500: {before:.3g} -> {after:.3g}"
