"""Shared fixtures: tiny but real configurations (demo profile, embedded digits, a few images)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from tiny_config import TINY, TINY_SETS, tiny_config  # noqa: F401  (re-exported for fixtures)


@pytest.fixture
def tiny_cfg():
    return tiny_config


@pytest.fixture(scope="session")
def digits():
    from tort_core.data import load_dataset

    return load_dataset("digits", None)
