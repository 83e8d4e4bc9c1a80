"""analysis.power: the SD a plan uses, from the store, and the plan's numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import stats
from analysis.load import Store
from analysis.power import observed_sd, plan


def test_observed_sd_is_the_pooled_sd_of_the_comparisons_trials(frames, specs):
    store = Store.from_frames(*frames(specs(datasets=("digits", "flowers102"), seeds=(0, 1, 2))))
    sds = observed_sd(store, "sota", "tort", ["digits", "flowers102", "oxford_pet"], "scratch", "demo",
                      sweep="compare-demo")
    assert set(sds) == {"digits", "flowers102"}  # no trials of oxford_pet: no SD, and none invented
    t = store.completed()
    t = t[t.dataset == "digits"]
    a = t.loc[t.recipe == "sota", "final_test_top1"].to_numpy()
    b = t.loc[t.recipe == "tort", "final_test_top1"].to_numpy()
    expected = math.sqrt((2 * a.var(ddof=1) + 2 * b.var(ddof=1)) / 4)
    assert sds["digits"][0] == pytest.approx(expected)
    assert "this comparison's trials (3 sota + 3 tort" in sds["digits"][1]
    assert observed_sd(store, "sota", "tort", ["digits"], "finetune") == {}  # another mode: nothing to borrow


def test_plan_rows():
    df = plan({"digits": (2.0, "given")}, seeds=5, effect=2.0).iloc[0]
    assert df["seeds_needed"] == 17 and df["mde"] == pytest.approx(stats.min_detectable_effect(2.0, 5, 5))
    assert np.isfinite(df["mde"]) and df["mde"] > 2.0  # 5 seeds cannot see a 1-SD effect at 80% power
