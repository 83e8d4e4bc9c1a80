"""Shared fixtures: tiny but real configurations (demo profile, embedded digits, a few images)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Small enough for a CPU test (a few seconds a run), still the real data, model and recipe code.
TINY = {
    "epochs": 2,
    "optim.warmup_epochs": 1,
    "optim.cooldown_epochs": 1,
    "views.n_local": 2,
    "batch_size": 16,
    "data.train_limit": 64,
    "data.test_limit": 48,
    "data.eval_batch_size": 64,
}

TINY_SETS = [f"{k}={v}" for k, v in TINY.items()]


@pytest.fixture
def tiny_cfg():
    from tort_core.config import build_config

    def make(recipe: str = "tort", **overrides):
        return build_config(recipe, "demo", overrides={**TINY, **overrides})

    return make


@pytest.fixture(scope="session")
def digits():
    from tort_core.data import load_dataset

    return load_dataset("digits", None)
