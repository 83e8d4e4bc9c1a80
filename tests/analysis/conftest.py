"""Synthetic results stores with the schema `tort sweep` writes (tort_core.results.load_epochs /
load_trials): one row per (trial, epoch), one summary row per trial, every config key as a dotted
column from RunConfig.flat(), plus sweep, trial id, seed and provenance columns."""

from __future__ import annotations

import pytest

from analysis.load import Store
from synthetic_store import comparison_specs, make_frames


@pytest.fixture
def frames():
    return make_frames


@pytest.fixture
def specs():
    return comparison_specs


@pytest.fixture
def comparison_store() -> Store:
    return Store.from_frames(*make_frames(comparison_specs()))
