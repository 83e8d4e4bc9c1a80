"""analysis.stats against known answers (hand-computed values, published tables, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from analysis import stats


def test_mean_ci_matches_t_interval():
    x = [1.0, 2.0, 3.0, 4.0]
    e = stats.mean_ci(x)
    lo, hi = st.t.interval(0.95, 3, loc=2.5, scale=st.sem(x))
    assert e.value == pytest.approx(2.5) and e.lo == pytest.approx(lo) and e.hi == pytest.approx(hi)
    assert e.n == 4


def test_no_interval_says_why_and_never_prints_zero_width():
    one = stats.mean_ci([3.0])
    assert one.value == 3.0 and math.isnan(one.lo) and one.why == "1 seed"
    assert one.fmt() == "3.00 (no interval: 1 seed)"
    flat = stats.mean_ci([30.0, 30.0])
    assert not flat.has_interval and "[30.00, 30.00]" not in flat.fmt() and "equal" in flat.fmt()
    none = stats.mean_ci([])
    assert math.isnan(none.value) and none.n == 0 and none.fmt().startswith("n/a")
    d = stats.welch_diff_ci([5.0, 5.0], [7.0, 7.0])
    assert d.value == 2.0 and not d.has_interval and d.fmt() == "2.00 (no interval: no spread in either arm)"


def test_welch_diff_ci_is_scipys_welch_interval_and_hand_computed():
    a, b = [1.0, 2.0, 4.0], [2.0, 5.0, 9.0, 7.0]
    e = stats.welch_diff_ci(a, b)
    # by hand: Δ = 5.75 − 7/3; se² = s_b²/4 + s_a²/3; Welch–Satterthwaite df; t quantile
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    se2 = vb / 4 + va / 3
    df = se2 ** 2 / ((vb / 4) ** 2 / 3 + (va / 3) ** 2 / 2)
    h = st.t.ppf(0.975, df) * math.sqrt(se2)
    assert e.value == pytest.approx(5.75 - 7 / 3)
    assert e.lo == pytest.approx(e.value - h) and e.hi == pytest.approx(e.value + h)


def test_identical_samples_are_not_significant():
    x = np.array([10.2, 11.5, 9.8, 10.9, 10.4])
    tg = stats.two_group(x, x.copy())
    assert tg.welch.p == pytest.approx(1.0)
    assert tg.mann_whitney.p == pytest.approx(1.0)
    assert tg.diff.value == 0.0 and tg.diff.covers(0.0)
    assert tg.hedges_g == pytest.approx(0.0)
    assert tg.p_improvement == pytest.approx(0.5)


def test_constant_groups_give_undefined_tests_not_zero():
    r = stats.welch_t([5.0, 5.0, 5.0], [5.0, 5.0, 5.0])
    assert math.isnan(r.p) and "no spread" in r.note and not r.significant()
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


def test_hedges_g_known_value():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0, 5.0])
    # pooled sd = 1, d = 2, J = 1 - 3 / (4*6 - 9) = 0.8
    assert stats.hedges_g(a, b) == pytest.approx(1.6)


def test_prob_improvement_counts_ties_as_half():
    assert stats.prob_improvement([1, 2], [2, 3]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert math.isnan(stats.prob_improvement([], [1.0]))


def test_mann_whitney_floor():
    assert stats.mw_min_p(2, 2) == pytest.approx(1 / 3)
    assert stats.mw_min_p(3, 3) == pytest.approx(0.1)
    assert stats.mw_min_p(10, 10) == pytest.approx(2 / 184756)
    r = stats.mann_whitney([1.0, 2.0], [10.0, 11.0])
    assert r.min_p == pytest.approx(1 / 3) and r.p == pytest.approx(1 / 3) and not r.significant()
    assert "smallest attainable" in r.note


def test_mann_whitney_at_1500_seeds_per_arm_does_not_overflow():
    assert 0.0 <= stats.mw_min_p(1500, 1500) < 1e-300  # 2 / C(3000, 1500) underflows; no OverflowError
    rng = np.random.default_rng(0)
    r = stats.mann_whitney(rng.normal(0, 1, 1500), rng.normal(0.2, 1, 1500))
    assert 0 <= r.p < 1e-3 and r.min_p < 1e-300


def test_mann_whitney_with_ties_uses_the_exact_distribution():
    # scipy's normal approximation gives p ≈ 0.047 here; 3 vs 3 cannot truly go below 2/20 = 0.1
    r = stats.mann_whitney([6.0, 6.0, 6.0], [4.0, 4.0, 4.0])
    assert r.p == pytest.approx(0.1) and not r.significant()
    one = stats.mann_whitney([6.0], [6.0])  # one seed each: a p-value exists but means nothing
    assert one.min_p == 1.0 and not one.significant()


def test_holm_by_hand_and_nan_handling():
    # sorted p 0.005, 0.01, 0.03, 0.04, 0.2 × (5, 4, 3, 2, 1) = 0.025, 0.04, 0.09, 0.08 → 0.09, 0.2
    adj, rej = stats.holm([0.01, 0.04, 0.03, 0.2, 0.005])
    np.testing.assert_allclose(adj, [0.04, 0.09, 0.09, 0.2, 0.025])
    assert list(rej) == [True, False, False, False, True]
    adj2, rej2 = stats.holm([0.01, math.nan, 0.04])
    assert math.isnan(adj2[1]) and not rej2[1]
    np.testing.assert_allclose(adj2[[0, 2]], [0.02, 0.04])  # NaN does not count towards the family


def test_log_ratio_ci_on_exact_geometric_data():
    base, meth = np.array([20.0, 20.0 * math.e]), np.array([10.0, 10.0 * math.e])
    e = stats.log_ratio_ci(base, meth)
    assert e.value == pytest.approx(2.0) and e.lo < 2.0 < e.hi
    same = stats.log_ratio_ci([10.0, 10.0], [5.0, 5.0])
    assert same.value == pytest.approx(2.0) and not same.has_interval


def test_tost_against_hand_computed_one_sided_tests():
    a, b = np.array([10.0, 10.4, 9.8, 10.2]), np.array([10.1, 10.3, 9.9, 10.5])
    m = 1.0
    d = b.mean() - a.mean()
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 4
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 3)
    p_lower = st.t.sf((d + m) / se, df)   # H0: Δ ≤ −m
    p_upper = st.t.cdf((d - m) / se, df)  # H0: Δ ≥ +m
    r = stats.tost(a, b, m)
    assert r.p == pytest.approx(max(p_lower, p_upper)) and r.significant()
    assert stats.equivalence(a, b, m).verdict == stats.EQUIVALENT


def test_smallest_margin_is_where_tost_starts_to_reject():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 6), rng.normal(0.3, 1, 6)
    m = stats.smallest_margin(a, b)
    assert stats.tost(a, b, m * 1.001).p < 0.05 < stats.tost(a, b, m * 0.999).p


def test_equivalence_verdicts():
    ref = np.array([50.0, 50.2, 49.8, 50.1, 49.9, 50.0])
    same = ref + np.array([0.05, -0.05, 0.1, -0.1, 0.0, 0.02])
    far = ref + 3.0
    assert stats.equivalence_family(ref, [same], 1.0).verdict == stats.EQUIVALENT
    assert stats.equivalence_family(ref, [same, far], 1.0).verdict == stats.DIFFERENT
    noisy = np.array([47.0, 53.0])  # two seeds, wide spread: neither equivalent nor different
    fam = stats.equivalence_family(ref, [noisy], 1.0)
    assert fam.verdict == stats.INCONCLUSIVE and fam.smallest_margin > 1.0
    assert fam.text().startswith("inconclusive (smallest margin supportable: ")


def test_power_matches_cohens_tables():
    # Cohen (1988), two-sided α = .05, power .80: d = 1.0 needs 17 per group; 10 per group detect d ≈ 1.32
    assert stats.seeds_needed(1.0, 1.0) == 17
    assert stats.seeds_needed(0.5, 1.0) == 64
    assert stats.min_detectable_effect(1.0, 10, 10) == pytest.approx(1.32, abs=0.01)
    assert stats.min_detectable_effect(2.0, 10, 10) == pytest.approx(2.65, abs=0.02)  # scales with the SD
    assert math.isnan(stats.min_detectable_effect(1.0, 1, 5)) and math.isnan(stats.min_detectable_effect(0.0, 5, 5))
    assert stats.seeds_needed(10.0, 1.0) == 2  # a huge effect still needs two seeds for any interval


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
    assert stats.iqm([1, 2, 3, 4, 100, -100, 2.5, 3.5]) == pytest.approx(np.mean([2, 2.5, 3, 3.5]))
