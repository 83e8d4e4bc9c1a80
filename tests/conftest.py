"""Shared fixtures: tiny but real configurations (demo profile, embedded digits, a few images)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from tiny_config import TINY, TINY_SETS  # noqa: F401  (re-exported for fixtures)



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
