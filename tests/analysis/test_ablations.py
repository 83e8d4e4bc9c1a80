"""analysis.ablations: finding ablation sweeps, the reference variant, tests against it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.ablations import find_ablations, numeric_value, sort_key
from analysis.load import Store


def _sweep(key, values, seeds=(0, 1, 2), sweep="ab", **per_value):
    specs = []
    for v in values:
        for s in seeds:
            extra = {k: f(v) for k, f in per_value.items()}
            specs.append({"recipe": "tort", "dataset": "digits", "seed": s, "sweep": sweep,
                          "overrides": {key: v}, "axes": {key: v}, **extra})
    return specs


def test_finds_the_swept_key_and_the_profile_default(frames):
    store = Store.from_frames(*frames(_sweep("loss.teacher_temp", [0.02, 0.04, 0.06])))
    (ab,) = find_ablations(store)
    assert ab.keys == ["loss.teacher_temp"] and ab.values == ["0.02", "0.04", "0.06"]
    assert ab.default == "0.04" and ab.default_source == "default"


def test_comparison_sweeps_are_not_ablations(frames, specs):
    store = Store.from_frames(*frames(specs(datasets=("digits",), seeds=(0,))))
    assert find_ablations(store) == []


def test_variants_are_tested_against_the_default_with_holm(frames):
    # 0.1 and 0.3 are far better than the default 0.04 weight decay; 0.0 is the same
    plateau = {0.0: 40.0, 0.04: 40.0, 0.1: 60.0, 0.3: 60.0}
    store = Store.from_frames(*frames(_sweep("optim.weight_decay", list(plateau), seeds=(0, 1, 2, 3),
                                             plateau=lambda v: plateau[v], noise=lambda v: 0.5)))
    (ab,) = find_ablations(store)
    t = ab.table[ab.table.metric == "final_test_top1"].set_index("value")
    assert t.loc["0.04", "is_default"] and np.isnan(t.loc["0.04", "welch_p"])
    assert t.loc["0.1", "welch_p_holm"] < 0.05 and t.loc["0.3", "welch_p_holm"] < 0.05
    assert t.loc["0", "welch_p_holm"] > 0.05
    tests = t[~t["is_default"]]
    p = tests["welch_p"].to_numpy()  # Holm by hand: sorted p × (m − rank), running maximum, capped at 1
    order = np.argsort(p)
    expected = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    np.testing.assert_allclose(tests["welch_p_holm"].to_numpy()[order], expected)


def test_default_outside_the_sweep_falls_back_and_says_so(frames):
    store = Store.from_frames(*frames(_sweep("loss.teacher_temp", [0.06, 0.08], seeds=(0,))))
    (ab,) = find_ablations(store)
    assert ab.default == "0.06" and "not in this sweep" in ab.notes[0]


def test_failed_and_unfinished_trials_are_counted_not_used(frames):
    sp = _sweep("views.rot_prob", [0.5, 1.0], seeds=(0, 1))
    sp[0] = {**sp[0], "status": "failed", "upto": 1}
    sp[1] = {**sp[1], "upto": 2}  # still running
    (ab,) = find_ablations(Store.from_frames(*frames(sp)))
    t = ab.table[(ab.table.metric == "final_test_top1") & (ab.table.value == "0.5")]
    assert int(t["n"].iloc[0]) == 0 and np.isnan(t["mean"].iloc[0])
    f = ab.failures.set_index(["value", "status"])["trials"]
    assert f[("0.5", "failed")] == 1 and f[("0.5", "running")] == 1
    assert any("not finished" in n for n in ab.notes)


def test_settling_epochs_in_one_groupby_match_the_per_trial_definition(frames):
    from analysis.metrics import loss_settling_epoch, per_trial, settling_epochs

    ep, _ = frames([{"recipe": "tort", "seed": s, "distill": (5.0, 1.0 + s), "epochs": 12} for s in range(4)]
                   + [{"recipe": "tort", "seed": 9, "distill": (-2.0, 3.0)}])  # a rising loss: NaN
    fast = settling_epochs(ep, "loss_distill")
    slow = per_trial(ep, lambda g: loss_settling_epoch(g["epoch"], g["loss_distill"]))
    pd.testing.assert_series_equal(fast.sort_index(), slow.sort_index(), check_names=False)
    assert fast.isna().sum() == 1


def test_distill_settling_epoch_is_computed_per_trial(frames):
    store = Store.from_frames(*frames(_sweep("loss.student_temp", [0.1, 0.3], distill=lambda v: (5.0, 1.0 if v > 0.1
                                                                                                  else 4.0))))
    (ab,) = find_ablations(store)
    t = ab.table[ab.table.metric == "distill_settling_epoch"].set_index("value")
    assert t.loc["0.3", "mean"] < t.loc["0.1", "mean"]


def test_value_ordering_and_numbers():
    labels = ["[distill, supervised, rotation]", "[rotation]", "[distill, rotation]", "[distill]"]
    assert sorted(labels, key=sort_key) == ["[distill]", "[rotation]", "[distill, rotation]",
                                            "[distill, supervised, rotation]"]
    assert sorted(["0.1", "0.02", "1e-06"], key=sort_key) == ["1e-06", "0.02", "0.1"]
    assert numeric_value("[0.4, 0.6]") == 0.5 and np.isnan(numeric_value("[distill]"))
