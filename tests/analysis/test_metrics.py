"""Convergence and time metrics on constructed curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import metrics


def _rows(trial: str, values, seconds=None, sps=None) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"trial_id": trial, "epoch": np.arange(1, n + 1), "test_top1": values,
                         "epoch_seconds": seconds if seconds is not None else [1.0] * n,
                         "train_seconds": [0.5] * n, "samples_per_s": sps if sps is not None else [10.0] * n})


def test_first_epoch_reaching():
    assert metrics.first_epoch_reaching([1, 2, 3, 4], [1, 5, 9, 12], 9) == 3
    assert math.isnan(metrics.first_epoch_reaching([1, 2, 3], [1, 2, 3], 10))
    # unevaluated epochs (NaN) are skipped, unsorted input is sorted
    assert metrics.first_epoch_reaching([3, 1, 2], [20, 1, math.nan], 5) == 3


def test_loss_settling_epoch():
    # drop from 10 to 1 (9); 90% of it means reaching 10 - 8.1 = 1.9
    assert metrics.loss_settling_epoch([1, 2, 3, 4, 5], [10, 6, 3, 1.8, 1.0]) == 4
    assert math.isnan(metrics.loss_settling_epoch([1, 2, 3], [1.0, 2.0, 3.0]))  # never decreased


def test_convergence_known_answer_and_speedup():
    # Baseline climbs 10 per epoch to 100 at epoch 10: target = 90, reached at epoch 9.
    # Method jumps to 95 at epoch 3: reaches 90 at epoch 3 → 3× faster.
    base = pd.concat([_rows("b0", np.arange(1, 11) * 10.0), _rows("b1", np.arange(1, 11) * 10.0)])
    meth_vals = [30.0, 60.0, 95.0, 96, 97, 97, 97, 97, 97, 97]
    meth = pd.concat([_rows("m0", meth_vals, seconds=[2.0] * 10), _rows("m1", meth_vals, seconds=[2.0] * 10)])
    c = metrics.convergence({"sota": base, "tort": meth}, "sota", frac=0.9).set_index("recipe")
    assert c.loc["sota", "target"] == pytest.approx(90.0)
    assert c.loc["sota", "epochs_mean_curve"] == 9 and c.loc["tort", "epochs_mean_curve"] == 3
    assert c.loc["tort", "speedup"] == pytest.approx(3.0) and c.loc["sota", "speedup"] == pytest.approx(1.0)
    assert c.loc["tort", "seeds_reached"] == 2
    assert c.loc["tort", "seconds_to_target"] == pytest.approx(6.0)  # 3 epochs × 2 s
    assert c.loc["sota", "seconds_to_target"] == pytest.approx(9.0)


def test_convergence_never_reached_is_nan_not_a_number():
    base = _rows("b0", [10.0, 50.0, 100.0])
    slow = pd.concat([_rows("m0", [1.0, 2.0, 3.0]), _rows("m1", [1.0, 2.0, 95.0])])
    c = metrics.convergence({"sota": base, "tort": slow}, "sota").set_index("recipe")
    assert math.isnan(c.loc["tort", "epochs_mean_curve"])  # mean curve peaks at 49
    assert c.loc["tort", "seeds_reached"] == 1 and c.loc["tort", "seeds"] == 2
    assert math.isnan(c.loc["tort", "speedup"])


def test_convergence_without_a_learning_baseline_sets_no_target():
    c = metrics.convergence({"sota": _rows("b", [0.0, 0.0]), "tort": _rows("m", [5.0, 9.0])}, "sota")
    assert c.empty


def test_mean_curve_band():
    df = pd.concat([_rows("a", [1.0, 2.0]), _rows("b", [3.0, 4.0])])
    mc = metrics.mean_curve(df, "test_top1")
    assert list(mc["mean"]) == [2.0, 3.0] and (mc["lo"] < mc["mean"]).all() and list(mc["n"]) == [2, 2]


def test_time_per_trial_and_ratio():
    base = pd.concat([_rows("b0", [1.0] * 4, seconds=[10.0] * 4, sps=[50.0] * 4),
                      _rows("b1", [1.0] * 4, seconds=[12.0] * 4, sps=[40.0] * 4)])
    meth = pd.concat([_rows("m0", [1.0] * 4, seconds=[5.0] * 4, sps=[100.0] * 4),
                      _rows("m1", [1.0] * 4, seconds=[6.0] * 4, sps=[80.0] * 4)])
    tb, tm = metrics.time_per_trial(base), metrics.time_per_trial(meth)
    assert list(tb["seconds_per_epoch"]) == [10.0, 12.0] and list(tb["total_seconds"]) == [40.0, 48.0]
    r = metrics.time_ratio(tb, tm)
    assert r["seconds_per_epoch"].value == pytest.approx(2.0)  # 11 s vs 5.5 s per epoch
    assert r["samples_per_s"].value == pytest.approx(2.0)      # 90 vs 45 samples/s
    assert r["total_seconds"].value == pytest.approx(2.0)
