"""analysis.stats against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from analysis import stats


def test_mean_ci_matches_t_interval():
    x = [1.0, 2.0, 3.0, 4.0]
    e = stats.mean_ci(x)
    lo, hi = st.t.interval(0.95, 3, loc=2.5, scale=st.sem(x))
    assert e.value == pytest.approx(2.5) and e.lo == pytest.approx(lo) and e.hi == pytest.approx(hi)
    assert e.n == 4


def test_single_value_has_no_interval_and_empty_has_no_mean():
    one = stats.mean_ci([3.0])
    assert one.value == 3.0 and math.isnan(one.lo) and math.isnan(one.hi)
    none = stats.mean_ci([])
    assert math.isnan(none.value) and none.n == 0
    assert none.fmt() == "n/a"


def test_identical_samples_are_not_significant():
    x = np.array([10.2, 11.5, 9.8, 10.9, 10.4])
    tg = stats.two_group(x, x.copy())
    assert tg.welch.p == pytest.approx(1.0)
    assert tg.mann_whitney.p == pytest.approx(1.0)
    assert not tg.welch.significant() and not tg.mann_whitney.significant()
    assert tg.diff.value == 0.0 and tg.diff.covers(0.0)
    assert tg.hedges_g == pytest.approx(0.0)
    assert tg.p_improvement == pytest.approx(0.5)


def test_constant_groups_give_undefined_tests_not_zero():
    r = stats.welch_t([5.0, 5.0, 5.0], [5.0, 5.0, 5.0])
    assert math.isnan(r.p) and "zero variance" in r.note and not r.significant()
    assert math.isnan(stats.hedges_g([5.0, 5.0], [6.0, 6.0]))


def test_clear_shift_is_significant():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 1, 8), rng.normal(20, 1, 8)
    tg = stats.two_group(a, b)
    assert tg.welch.significant() and tg.welch.statistic > 0
    assert tg.mann_whitney.p == pytest.approx(2 / math.comb(16, 8))  # complete separation, exact test
    assert tg.diff.lo > 5 and tg.diff.hi < 15
    assert tg.p_improvement == 1.0
    assert tg.hedges_g > 5


def test_welch_matches_scipy_and_direction_is_method_minus_baseline():
    a, b = [1.0, 2.0, 4.0], [2.0, 5.0, 9.0, 7.0]
    ref = st.ttest_ind(b, a, equal_var=False)
    r = stats.welch_t(a, b)
    assert r.statistic == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)


def test_hedges_g_known_value():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0, 5.0])
    # pooled sd = 1, d = 2, J = 1 - 3 / (4*6 - 9) = 0.8
    assert stats.hedges_g(a, b) == pytest.approx(1.6)


def test_prob_improvement_counts_ties_as_half():
    assert stats.prob_improvement([1, 2], [2, 3]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert math.isnan(stats.prob_improvement([], [1.0]))


def test_mann_whitney_reports_its_floor_with_two_seeds():
    r = stats.mann_whitney([1.0, 2.0], [10.0, 11.0])
    assert r.min_p == pytest.approx(1 / 3)
    assert r.p >= r.min_p - 1e-12 and not r.significant()
    assert "smallest attainable" in r.note


def test_mann_whitney_with_ties_uses_the_exact_distribution():
    # scipy's normal approximation gives p ≈ 0.047 here; 3 vs 3 cannot truly go below 2/20 = 0.1
    r = stats.mann_whitney([6.0, 6.0, 6.0], [4.0, 4.0, 4.0])
    assert r.p == pytest.approx(0.1) and not r.significant()
    one = stats.mann_whitney([6.0], [6.0])  # one seed each: a p-value exists but means nothing
    assert one.min_p == 1.0 and not one.significant()


def test_holm_matches_statsmodels_and_skips_nan():
    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    adj, rej = stats.holm(p)
    ref_rej, ref_adj, _, _ = multipletests(p, method="holm")
    np.testing.assert_allclose(adj, ref_adj)
    np.testing.assert_array_equal(rej, ref_rej)
    adj2, rej2 = stats.holm([0.01, math.nan, 0.04])
    ref2 = multipletests([0.01, 0.04], method="holm")[1]
    assert math.isnan(adj2[1]) and not rej2[1]
    np.testing.assert_allclose(adj2[[0, 2]], ref2)


def _coverage(sampler, true_value, ci_fn, reps=200, seed=1) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        hits += ci_fn(*sampler(rng), rng).covers(true_value)
    return hits / reps


def test_bootstrap_mean_ci_covers_at_about_nominal_rate():
    cover = _coverage(lambda r: (r.normal(3.0, 2.0, 25),), 3.0,
                      lambda x, r: stats.bootstrap_ci(x, n_resamples=1000, seed=r))
    assert 0.88 <= cover <= 0.99


def test_bootstrap_difference_ci_covers_at_about_nominal_rate():
    cover = _coverage(lambda r: (r.exponential(2.0, 25), r.exponential(2.0, 25) + 1.5), 1.5,
                      lambda a, b, r: stats.bootstrap_diff_ci(a, b, n_resamples=1000, seed=r), seed=2)
    assert 0.88 <= cover <= 0.99


def test_bootstrap_ratio_ci_brackets_the_true_ratio():
    rng = np.random.default_rng(3)
    e = stats.bootstrap_ratio_ci(rng.normal(20, 1, 10), rng.normal(10, 0.5, 10))
    assert e.lo < 2.0 < e.hi and e.value == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_wilcoxon_with_few_datasets_reports_minimum_attainable_p(n):
    r = stats.wilcoxon_signed_rank(np.arange(1, n + 1) * 3.0)  # every dataset favours the method
    assert r.min_p == pytest.approx(2.0 ** (1 - n))
    assert r.p == pytest.approx(r.min_p)  # the best possible ranking reaches exactly the floor
    assert not r.significant()
    assert "impossible" in r.note


def test_wilcoxon_with_six_datasets_can_be_significant():
    r = stats.wilcoxon_signed_rank([1, 2, 3, 4, 5, 6])
    assert r.p == pytest.approx(1 / 32) and r.significant() and r.note == ""


def test_wilcoxon_drops_zero_differences_and_handles_none():
    r = stats.wilcoxon_signed_rank([0.0, 0.0, 2.0, 3.0])
    assert r.n == 2
    empty = stats.wilcoxon_signed_rank([0.0, 0.0])
    assert empty.n == 0 and math.isnan(empty.p)


def test_iqm_ignores_the_extreme_quarters():
    assert stats.iqm([0, 1, 2, 3, 4, 5, 6, 1000]) == pytest.approx(st.trim_mean([0, 1, 2, 3, 4, 5, 6, 1000], 0.25))
    assert stats.iqm([1, 2, 3, 4, 100, -100, 2.5, 3.5]) == pytest.approx(np.mean([2, 2.5, 3, 3.5]))


def test_stratified_bootstrap_iqm_keeps_strata_and_brackets_value():
    scores = {"a": [1.0, 1.1, 0.9, 1.0], "b": [2.0, 2.2, 1.8, 2.1], "c": [1.5]}
    e = stats.stratified_bootstrap_iqm(scores, n_resamples=500)
    assert e.n == 9 and e.lo <= e.value <= e.hi
    # a stratum of one run is always resampled as itself: with every stratum constant, no spread
    flat = stats.stratified_bootstrap_iqm({"a": [1.0, 1.0], "b": [2.0, 2.0]}, n_resamples=200)
    assert flat.lo == flat.hi == pytest.approx(1.5)


def test_normalise_by_baseline_refuses_zero_baseline():
    assert np.isnan(stats.normalise_by_baseline([0.0, 0.0], [1.0])).all()
    np.testing.assert_allclose(stats.normalise_by_baseline([2.0, 4.0], [6.0, 3.0]), [2.0, 1.0])
