"""analysis.across: IQM, probability of improvement, performance profiles, Friedman/Nemenyi."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import across
from analysis.reference import chance_for, classes_for, normalise


def test_expanded_tail_widens_small_samples_and_vanishes_for_large():
    # Hesterberg: Φ(−√(n/(n−1))·t_{0.975,n−1}); n = 3 → Φ(−1.2247·4.303) ≈ 0.0000
    assert across.expanded_tail(3) == pytest.approx(st.norm.cdf(-math.sqrt(1.5) * st.t.ppf(0.975, 2)))
    assert across.expanded_tail(3) < across.expanded_tail(10) < 0.025
    assert across.expanded_tail(10_000) == pytest.approx(0.025, abs=1e-4)


def test_iqm_by_arm_values_and_intervals():
    base = {"a": [0.1, 0.2, 0.3, 0.4], "b": [0.5, 0.6, 0.7, 0.8]}
    meth = {"a": [0.3, 0.4, 0.5, 0.6], "b": [0.7, 0.8, 0.9, 1.0]}
    ib, im, d = across.iqm_by_arm(base, meth, n_resamples=500)
    assert ib.value == pytest.approx(st.trim_mean(np.concatenate(list(base.values())), 0.25))
    assert im.value == pytest.approx(ib.value + 0.2) and d.value == pytest.approx(0.2)
    assert ib.lo < ib.value < ib.hi and d.lo < 0.2 < d.hi


def test_bootstrap_intervals_are_withheld_below_three_seeds():
    ib, im, d = across.iqm_by_arm({"a": [0.1, 0.2]}, {"a": [0.3, 0.5]})
    assert math.isfinite(d.value) and not d.has_interval and d.why == "needs ≥ 3 seeds per dataset"
    pi = across.mean_prob_improvement({"a": [1.0, 2.0]}, {"a": [3.0, 4.0]})
    assert pi.value == 1.0 and not pi.has_interval


def test_mean_prob_improvement_matches_pairwise_counting():
    base = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([5.0, 5.0, 7.0])}
    meth = {"a": np.array([2.0, 4.0, 5.0]), "b": np.array([5.0, 6.0, 4.0])}

    def pairwise(x, y):
        d = y[:, None] - x[None, :]
        return ((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size

    e = across.mean_prob_improvement(base, meth, n_resamples=500)
    assert e.value == pytest.approx(np.mean([pairwise(base[k], meth[k]) for k in base]))
    assert e.lo <= e.value <= e.hi


def test_performance_profile_fractions():
    prof = across.performance_profile({"x": {"a": [0.1, 0.5, 0.9], "b": [0.2, 0.2, 0.2]}}, [0.0, 0.3, 0.95])
    # τ = 0.3: dataset a has 2/3 above, b 0/3 → mean 1/3; τ = 0: all above; τ = 0.95: none
    np.testing.assert_allclose(prof["fraction"], [1.0, 1 / 3, 0.0])
    assert (prof["lo"] <= prof["fraction"] + 1e-12).all() and (prof["fraction"] <= prof["hi"] + 1e-12).all()


def test_nemenyi_cd_matches_demsar_table():
    # Demšar (2006), Table 5: q_0.05 = 2.343 (k = 3), 2.569 (k = 4); CD = q √(k(k+1)/6N)
    assert across.nemenyi_cd(3, 4) == pytest.approx(2.343 * math.sqrt(12 / 24), abs=1e-3)
    assert across.nemenyi_cd(4, 10) == pytest.approx(2.569 * math.sqrt(20 / 60), abs=1e-3)


def test_friedman_nemenyi_ranks_and_cliques():
    table = pd.DataFrame({"tort": [40, 30, 50, 20, 35], "sota": [20, 10, 30, 5, 15], "deit": [21, 12, 29, 6, 16]},
                         index=["d1", "d2", "d3", "d4", "d5"])
    r = across.friedman_nemenyi(table)
    assert list(r.mean_ranks.index) == ["tort", "deit", "sota"]
    assert r.mean_ranks["tort"] == 1.0 and r.mean_ranks["deit"] == pytest.approx(2.2)
    ref = st.friedmanchisquare(table["tort"], table["sota"], table["deit"])
    assert r.statistic == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    # CD(3, 5) = 1.482: tort–deit differ by 1.2 (joined), deit–sota by 0.6 (joined), tort–sota by 1.8 (not)
    assert r.cliques() == [["tort", "deit"], ["deit", "sota"]]


def test_friedman_needs_three_arms_and_two_datasets():
    two = across.friedman_nemenyi(pd.DataFrame({"a": [1, 2], "b": [2, 1]}))
    assert math.isnan(two.p) and "needs at least 3" in two.notes[-1]
    one = across.friedman_nemenyi(pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]}))
    assert math.isnan(one.cd) and "at least 2" in one.notes[-1]
    missing = across.friedman_nemenyi(pd.DataFrame({"a": [1, 2, np.nan], "b": [2, 1, 3], "c": [3, 3, 1]},
                                                   index=["x", "y", "z"]))
    assert missing.n_datasets == 2 and "z" in missing.notes[0]


def test_chance_from_the_catalog_and_from_num_classes():
    assert chance_for("flowers102") == pytest.approx(100 / 102)
    assert math.isnan(chance_for("imagefolder:flowers17"))  # until the store records num_classes
    trials = pd.DataFrame({"dataset": ["imagefolder:flowers17"] * 2, "num_classes": [17, 17]})
    assert classes_for("imagefolder:flowers17", trials) == 17
    assert chance_for("imagefolder:flowers17", trials) == pytest.approx(100 / 17)
    np.testing.assert_allclose(normalise([10.0, 55.0, 100.0], 10.0), [0.0, 0.5, 1.0])
    assert np.isnan(normalise([50.0], math.nan)).all()
