"""Statistics for comparing recipes over seeds: intervals, tests, equivalence, power.

Every function takes plain arrays (one value per seed) and returns plain numbers, so a notebook
can use them on anything. Undefined quantities come back as NaN, never as 0, with the reason: with
one seed there is no confidence interval, with zero spread in both arms there is no t statistic.

The sample sizes here are tiny (2–10 seeds), so the interval the tables show for a difference of
means is Welch's t interval, whose coverage holds at those sizes (measured by `analysis.simulation`;
docs/statistics.md has the table). Bootstrap intervals appear only where that simulation shows
they cover, and say so. Each test carries what limits it: the smallest p it can produce at all.
Across datasets (IQM, probability of improvement, ranks) see `analysis.across`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

LEVEL = 0.95
ALPHA = 0.05
POWER = 0.8
N_RESAMPLES = 9999
EXACT_PERMUTATIONS = 5_000  # enumerate a tied rank test's null distribution up to this many splits (7 + 7 seeds)

PRIMARY_TEST = "Welch t"  # the declared test of every two-arm comparison; the others are secondary


def _clean(x: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    return a[np.isfinite(a)]


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# Estimates with intervals

@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval. lo/hi are NaN when no interval exists, and
    `why` then says why (one seed, no spread, too few seeds for a bootstrap that covers)."""

    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0
    why: str = ""

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def covers(self, x: float) -> bool:
        return bool(self.lo <= x <= self.hi)

    def excludes(self, x: float) -> bool:
        return self.has_interval and not self.covers(x)

    def fmt(self, digits: int = 2) -> str:
        return fmt_estimate(self.value, self.lo, self.hi, self.why, digits)


def fmt_estimate(value: float, lo: float, hi: float, why: str = "", digits: int = 2) -> str:
    """'12.30 [10.10, 14.50]'; without an interval the value and why there is none, never a
    zero-width '[x, x]' that reads as certainty."""
    if value is None or not math.isfinite(float(value)):
        return "n/a" + (f" ({why})" if why else "")
    text = f"{float(value):.{digits}f}"
    if lo is not None and hi is not None and math.isfinite(float(lo)) and math.isfinite(float(hi)):
        return f"{text} [{float(lo):.{digits}f}, {float(hi):.{digits}f}]"
    return f"{text} (no interval: {why})" if why else f"{text} (no interval)"


def mean_ci(x: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean with a Student-t interval (the honest choice for 2–10 seeds: wide when n is small)."""
    a = _clean(x)
    n = len(a)
    if n == 0:
        return Estimate(math.nan, n=0, why="no values")
    m = float(a.mean())
    if n == 1:
        return Estimate(m, n=1, why="1 seed")
    if np.ptp(a) == 0:
        return Estimate(m, n=n, why=f"all {n} seeds equal")
    se = float(a.std(ddof=1)) / math.sqrt(n)
    h = float(st.t.ppf(0.5 + level / 2, n - 1)) * se
    return Estimate(m, m - h, m + h, n)


def welch_diff_ci(baseline: Sequence[float], method: Sequence[float], level: float = LEVEL) -> Estimate:
    """mean(method) − mean(baseline) with Welch's t interval (scipy.stats.ttest_ind, unequal
    variances). This is the Δ interval every table and figure shows: at 2–10 seeds it holds its
    level, where a percentile bootstrap covers 71–90% (docs/statistics.md)."""
    a, b = _clean(baseline), _clean(method)
    n = len(a) + len(b)
    if len(a) == 0 or len(b) == 0:
        return Estimate(math.nan, n=n, why="an arm has no values")
    value = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return Estimate(value, n=n, why="needs ≥ 2 seeds per arm")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Estimate(value, n=n, why="no spread in either arm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = st.ttest_ind(b, a, equal_var=False).confidence_interval(level)
    return Estimate(value, float(ci.low), float(ci.high), n)


def log_ratio_ci(numerator: Sequence[float], denominator: Sequence[float], level: float = LEVEL) -> Estimate:
    """Ratio of geometric means, numerator ÷ denominator, with a Welch interval on the log scale.

    For run-to-run noise that is multiplicative with a similar spread in both arms (timings,
    epochs to a target) this is the ratio of the means; it covers at 2–10 seeds where the
    percentile bootstrap of a ratio of means does not (docs/statistics.md)."""
    a, b = _clean(numerator), _clean(denominator)
    a, b = a[a > 0], b[b > 0]
    n = len(a) + len(b)
    if len(a) == 0 or len(b) == 0:
        return Estimate(math.nan, n=n, why="an arm has no positive values")
    la, lb = np.log(a), np.log(b)
    value = float(math.exp(la.mean() - lb.mean()))
    if len(a) < 2 or len(b) < 2:
        return Estimate(value, n=n, why="needs ≥ 2 seeds per arm")
    if np.ptp(la) == 0 and np.ptp(lb) == 0:
        return Estimate(value, n=n, why="no spread in either arm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = st.ttest_ind(la, lb, equal_var=False).confidence_interval(level)
    return Estimate(value, float(math.exp(ci.low)), float(math.exp(ci.high)), n)


# The percentile bootstraps below were the tables' intervals before; they stay for notebooks and
# for `analysis.simulation`, which measures how badly they cover at a few seeds.

def bootstrap_ci(x: Sequence[float], statistic: Callable = np.mean, level: float = LEVEL,
                 n_resamples: int = N_RESAMPLES, method: str = "percentile",
                 seed: int | np.random.Generator | None = 0) -> Estimate:
    """Bootstrap interval of a one-sample statistic (scipy.stats.bootstrap). With fewer than ~10
    values any percentile interval is too narrow (it cannot see beyond the observed range)."""
    a = _clean(x)
    if len(a) == 0:
        return Estimate(math.nan, n=0, why="no values")
    value = float(statistic(a))
    if len(a) == 1:
        return Estimate(value, n=1, why="1 value")
    if np.ptp(a) == 0:
        return Estimate(value, n=len(a), why="all values equal")
    res = st.bootstrap((a,), lambda s, axis=-1: statistic(s, axis=axis), confidence_level=level,
                       n_resamples=n_resamples, method=method, vectorized=True, random_state=_rng(seed))
    return Estimate(value, float(res.confidence_interval.low), float(res.confidence_interval.high), len(a))


def bootstrap_diff_ci(baseline: Sequence[float], method: Sequence[float], level: float = LEVEL,
                      n_resamples: int = N_RESAMPLES, seed: int | np.random.Generator | None = 0) -> Estimate:
    """mean(method) − mean(baseline), percentile bootstrap with seeds resampled within each arm.
    Covers 71% at 2 seeds, 80% at 3, 89–90% at 5–10: not for tables (use `welch_diff_ci`)."""
    a, b = _clean(baseline), _clean(method)
    if len(a) == 0 or len(b) == 0:
        return Estimate(math.nan, n=0, why="an arm has no values")
    value = float(b.mean() - a.mean())
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(value, n=n, why="needs ≥ 2 seeds per arm")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Estimate(value, n=n, why="no spread in either arm")
    res = st.bootstrap((b, a), lambda y, x, axis=-1: y.mean(axis=axis) - x.mean(axis=axis),
                       confidence_level=level, n_resamples=n_resamples, method="percentile",
                       vectorized=True, paired=False, random_state=_rng(seed))
    return Estimate(value, float(res.confidence_interval.low), float(res.confidence_interval.high), n)


def bootstrap_ratio_ci(numerator: Sequence[float], denominator: Sequence[float], level: float = LEVEL,
                       n_resamples: int = N_RESAMPLES, seed: int | np.random.Generator | None = 0) -> Estimate:
    """mean(numerator) / mean(denominator), percentile bootstrap (under-covers at a few seeds:
    the tables use `log_ratio_ci`)."""
    a, b = _clean(numerator), _clean(denominator)
    if len(a) == 0 or len(b) == 0 or b.mean() == 0:
        return Estimate(math.nan, n=0, why="an arm has no values")
    value = float(a.mean() / b.mean())
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(value, n=n, why="needs ≥ 2 seeds per arm")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Estimate(value, n=n, why="no spread in either arm")
    with np.errstate(divide="ignore", invalid="ignore"):
        res = st.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis=axis) / y.mean(axis=axis),
                           confidence_level=level, n_resamples=n_resamples, method="percentile",
                           vectorized=True, paired=False, random_state=_rng(seed))
    return Estimate(value, float(res.confidence_interval.low), float(res.confidence_interval.high), n)


# ---------------------------------------------------------------------------------------------
# Two-sample tests and effect sizes (baseline vs method, one value per seed)

@dataclass(frozen=True)
class TestResult:
    statistic: float
    p: float
    n: int
    min_p: float = math.nan  # the smallest p this test can return at this sample size
    note: str = ""

    def significant(self, alpha: float = ALPHA) -> bool:
        return bool(math.isfinite(self.p) and self.p < alpha)


def welch_t(baseline: Sequence[float], method: Sequence[float]) -> TestResult:
    """Welch's t-test (scipy.stats.ttest_ind, equal_var=False), method − baseline: the primary
    test of every comparison."""
    a, b = _clean(baseline), _clean(method)
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return TestResult(math.nan, math.nan, n, note="needs ≥ 2 seeds per arm")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        # No variance at all: t is undefined (0/0 or x/0); say so rather than guess.
        return TestResult(math.nan, math.nan, n, note="undefined: no spread in either arm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.ttest_ind(b, a, equal_var=False)
    return TestResult(float(res.statistic), float(res.pvalue), n)


def mw_min_p(n1: int, n2: int) -> float:
    """Smallest two-sided exact Mann–Whitney p for sample sizes n1, n2: 2 / C(n1 + n2, n1), the
    p of complete separation without ties (ties only raise it). Computed in log space, so 1,500
    seeds per arm give a tiny positive number (or 0.0 once it underflows), never an overflow."""
    if n1 < 1 or n2 < 1:
        return math.nan
    log_comb = math.lgamma(n1 + n2 + 1) - math.lgamma(n1 + 1) - math.lgamma(n2 + 1)
    return min(1.0, math.exp(math.log(2.0) - log_comb))


def mann_whitney(baseline: Sequence[float], method: Sequence[float]) -> TestResult:
    """Two-sided Mann–Whitney U (scipy.stats.mannwhitneyu); statistic is U of the method.
    A secondary test: its floor `min_p` says how small its p can get at these seed counts."""
    a, b = _clean(baseline), _clean(method)
    n = len(a) + len(b)
    if len(a) < 1 or len(b) < 1:
        return TestResult(math.nan, math.nan, n, note="needs ≥ 1 value per arm")
    min_p = mw_min_p(len(b), len(a))
    method_: object = "auto"
    small = n <= 40  # C(40, 20) ≈ 1.4e11: beyond this no enumeration is cheap anyway
    if (small and min(len(a), len(b)) >= 2 and len(np.unique(np.concatenate([a, b]))) < n
            and math.comb(n, len(a)) <= EXACT_PERMUTATIONS):
        # Ties (common: settling epochs, accuracies on a small test set) push scipy to its normal
        # approximation, which with 3 seeds a side reports p = 0.047 where the exact permutation
        # distribution cannot go below 0.1. Enumerate instead while that is cheap.
        method_ = st.PermutationMethod(n_resamples=np.inf)
    res = st.mannwhitneyu(b, a, alternative="two-sided", method=method_)
    note = f"smallest attainable p = {min_p:.3g}" if min_p > ALPHA else ""
    return TestResult(float(res.statistic), float(res.pvalue), n, min_p, note)


def pooled_sd(baseline: Sequence[float], method: Sequence[float]) -> float:
    a, b = _clean(baseline), _clean(method)
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return math.nan
    return math.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / (n1 + n2 - 2))


def hedges_g(baseline: Sequence[float], method: Sequence[float]) -> float:
    """Standardised mean difference (method − baseline) with the small-sample correction J."""
    a, b = _clean(baseline), _clean(method)
    s = pooled_sd(a, b)
    if not math.isfinite(s) or s == 0:
        return math.nan  # undefined, not infinite: the data carry no scale
    j = 1.0 - 3.0 / (4.0 * (len(a) + len(b)) - 9.0)
    return float(j * (b.mean() - a.mean()) / s)


def prob_improvement(baseline: Sequence[float], method: Sequence[float]) -> float:
    """P(method > baseline) for a random pair of runs, ties counting one half (= U / n1·n2)."""
    a, b = _clean(baseline), _clean(method)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    u = st.mannwhitneyu(b, a, alternative="two-sided", method="asymptotic").statistic
    return float(u / (len(a) * len(b)))


# ---------------------------------------------------------------------------------------------
# Equivalence: "no effect" as a claim that can be tested

EQUIVALENT, DIFFERENT, INCONCLUSIVE = "equivalent", "different", "inconclusive"


def tost(baseline: Sequence[float], method: Sequence[float], margin: float) -> TestResult:
    """Two one-sided Welch tests (statsmodels ttost_ind, usevar='unequal') of |Δ| < margin.
    p < α means Δ is within ±margin; it is the larger of the two one-sided p-values."""
    from statsmodels.stats.weightstats import ttost_ind

    a, b = _clean(baseline), _clean(method)
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return TestResult(math.nan, math.nan, n, note="needs ≥ 2 seeds per arm")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return TestResult(math.nan, math.nan, n, note="undefined: no spread in either arm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p, lower, upper = ttost_ind(b, a, -margin, margin, usevar="unequal")
    t = lower[0] if lower[1] >= upper[1] else upper[0]  # the one-sided test that decides
    return TestResult(float(t), float(p), n)


def smallest_margin(baseline: Sequence[float], method: Sequence[float], alpha: float = ALPHA) -> float:
    """The smallest margin m for which TOST at `alpha` concludes |Δ| < m: the farther end of the
    (1 − 2α) Welch interval from 0. NaN where that interval does not exist."""
    ci = welch_diff_ci(baseline, method, 1 - 2 * alpha)
    return max(abs(ci.lo), abs(ci.hi)) if ci.has_interval else math.nan


@dataclass(frozen=True)
class Equivalence:
    """A "no effect" check of one variant against its reference, within ±margin."""

    verdict: str          # EQUIVALENT | DIFFERENT | INCONCLUSIVE
    margin: float
    diff: Estimate        # Δ with its 95% Welch interval
    tost_p: float
    welch_p: float
    smallest_margin: float

    def text(self, digits: int = 2) -> str:
        return verdict_text(self.verdict, self.margin, self.smallest_margin, digits)


def verdict_text(verdict: str, margin: float, smallest: float, digits: int = 2) -> str:
    if verdict == EQUIVALENT:
        return f"equivalent within ±{margin:g}"
    if verdict == DIFFERENT:
        return "different"
    m = f"{smallest:.{digits}f}" if math.isfinite(smallest) else "none (too few seeds for an interval)"
    return f"inconclusive (smallest margin supportable: {m})"


def equivalence(baseline: Sequence[float], method: Sequence[float], margin: float, alpha: float = ALPHA,
                welch_p: float | None = None) -> Equivalence:
    """TOST against ±margin, and Welch's test against 0: equivalent when TOST rejects, different
    when Welch's (optionally Holm-adjusted: pass `welch_p`) rejects and TOST does not, inconclusive
    otherwise, with the smallest margin the data could support."""
    t = tost(baseline, method, margin)
    p = welch_t(baseline, method).p if welch_p is None else welch_p
    if t.significant(alpha):
        verdict = EQUIVALENT
    elif math.isfinite(p) and p < alpha:
        verdict = DIFFERENT
    else:
        verdict = INCONCLUSIVE
    return Equivalence(verdict, margin, welch_diff_ci(baseline, method), t.p, p,
                       smallest_margin(baseline, method, alpha))


@dataclass(frozen=True)
class EquivalenceFamily:
    """A "no effect" claim over several variants against one reference."""

    verdict: str
    margin: float
    smallest_margin: float              # the largest of the variants' smallest supportable margins
    members: tuple[Equivalence, ...]    # per variant, Welch p Holm-adjusted over the variants

    def text(self, digits: int = 2) -> str:
        return verdict_text(self.verdict, self.margin, self.smallest_margin, digits)


def equivalence_family(reference: Sequence[float], variants: Sequence[Sequence[float]], margin: float,
                       alpha: float = ALPHA) -> EquivalenceFamily:
    """"No variant differs from the reference by more than ±margin", tested as equivalence.

    Equivalent when every variant's TOST rejects (an intersection–union test: each at `alpha`, no
    correction needed); different when some variant's Holm-adjusted Welch test rejects and that
    variant is not itself shown equivalent; otherwise inconclusive, with the smallest margin every
    variant's data could support."""
    welch_p, _ = holm([welch_t(reference, v).p for v in variants], alpha)
    members = tuple(equivalence(reference, v, margin, alpha, p) for v, p in zip(variants, welch_p))
    if not members:
        return EquivalenceFamily(INCONCLUSIVE, margin, math.nan, members)
    smallest = max(m.smallest_margin for m in members)
    if any(m.verdict == DIFFERENT for m in members):
        verdict = DIFFERENT
    elif all(m.verdict == EQUIVALENT for m in members):
        verdict = EQUIVALENT
    else:
        verdict = INCONCLUSIVE
    return EquivalenceFamily(verdict, margin, smallest if math.isfinite(smallest) else math.nan, members)


# ---------------------------------------------------------------------------------------------
# Power: how big an effect these seeds can see, how many seeds an effect needs

@functools.lru_cache(maxsize=1024)
def _solve_d(n1: int, n2: int, alpha: float, power: float) -> float:
    """Standardised effect detectable with n1, n2 seeds (solve_power iterates: cached)."""
    from statsmodels.stats.power import TTestIndPower

    if n1 < 2 or n2 < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            d = TTestIndPower().solve_power(effect_size=None, nobs1=n1, alpha=alpha, power=power, ratio=n2 / n1)
        except (ValueError, RuntimeError):
            return math.nan
    d = float(np.asarray(d).ravel()[0])
    return d if math.isfinite(d) and d > 0 else math.nan


def min_detectable_effect(sd: float, n1: int, n2: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference (in the metric's units) a two-sided t-test at `alpha` detects
    with probability `power`, with n1 and n2 seeds and seed-to-seed SD `sd` (statsmodels
    TTestIndPower: the pooled-variance t, which Welch's matches for equal spreads)."""
    if not math.isfinite(sd) or sd <= 0:
        return math.nan
    return _solve_d(int(n1), int(n2), float(alpha), float(power)) * sd


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER, most: int = 100_000) -> int:
    """Seeds per arm for a two-sided t-test at `alpha` to detect a true difference `effect` with
    probability `power`, given seed-to-seed SD `sd` (at least 2)."""
    from statsmodels.stats.power import TTestIndPower

    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0 or sd <= 0:
        raise ValueError("effect must be non-zero and sd positive")
    d = abs(effect) / sd
    analysis = TTestIndPower()
    if analysis.power(effect_size=d, nobs1=2, alpha=alpha, ratio=1.0) >= power:
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = float(np.asarray(analysis.solve_power(effect_size=d, nobs1=None, alpha=alpha, power=power,
                                                  ratio=1.0)).ravel()[0])
    if not math.isfinite(n):
        return most
    return int(min(most, max(2, math.ceil(n - 1e-9))))


# ---------------------------------------------------------------------------------------------
# Multiple comparisons

def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm-adjusted p-values and rejections (statsmodels); NaN p-values stay NaN, not rejected,
    and do not count towards the family size."""
    p = np.asarray(pvalues, dtype=float)
    adj = np.full(p.shape, math.nan)
    reject = np.zeros(p.shape, dtype=bool)
    ok = np.isfinite(p)
    if ok.any():
        with _without_gc_collect():
            r, padj, _, _ = multipletests(p[ok], alpha=alpha, method="holm")
        adj[ok], reject[ok] = padj, r
    return adj, reject


@contextlib.contextmanager
def _without_gc_collect():
    """statsmodels' Holm branch ends with a full `gc.collect()`, ~0.3 s per call once torch is
    imported; a report makes hundreds of calls. Skipping that collection changes no result."""
    original = gc.collect
    gc.collect = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        gc.collect = original


# ---------------------------------------------------------------------------------------------
# Across datasets: the signed-rank test on per-dataset differences

def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided exact Wilcoxon signed-rank p with n non-zero differences: 2 / 2**n."""
    return math.nan if n < 1 else min(1.0, 2.0 ** (1 - n))


def wilcoxon_signed_rank(differences: Sequence[float], alpha: float = ALPHA) -> TestResult:
    """Wilcoxon signed-rank test on per-dataset differences (method − baseline means).

    Zero differences are dropped (scipy's 'wilcox' rule), so n is the number of datasets that
    differ at all. With n ≤ 5 the exact test cannot reach p < 0.05 however large the effect.
    """
    d = _clean(differences)
    nz = d[d != 0]
    n = len(nz)
    min_p = wilcoxon_min_p(n)
    if n == 0:
        return TestResult(math.nan, math.nan, 0, min_p, "no non-zero differences")
    note = ""
    if min_p >= alpha:
        note = (f"only {n} dataset{'s' if n != 1 else ''}: the smallest attainable p is {min_p:.3g}, "
                f"so significance at {alpha:g} is impossible")
    res = st.wilcoxon(nz, zero_method="wilcox", alternative="two-sided", method="auto")
    return TestResult(float(res.statistic), float(res.pvalue), n, min_p, note)


def iqm(x: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (robust to one diverged seed)."""
    a = _clean(x)
    return float(st.trim_mean(a, 0.25)) if len(a) else math.nan


# ---------------------------------------------------------------------------------------------
# One call for a whole two-arm comparison of one metric

@dataclass
class TwoGroup:
    """Everything the compare table shows for one metric on one dataset. `diff` is the Welch
    interval and `welch` the primary test; Mann–Whitney, Hedges' g and P(method > baseline) are
    secondary."""

    baseline: Estimate
    method: Estimate
    diff: Estimate
    welch: TestResult
    mann_whitney: TestResult
    hedges_g: float
    p_improvement: float
    sd: float = math.nan   # pooled seed-to-seed SD
    mde: float = math.nan  # smallest true Δ detectable at 80% power with these seeds and this SD
    notes: list[str] = field(default_factory=list)

    def as_row(self, prefix: str = "") -> dict[str, float | str | int]:
        row: dict[str, float | str | int] = {}
        for name in ("baseline", "method", "diff"):
            e: Estimate = getattr(self, name)
            row.update({f"{prefix}{name}_mean": e.value, f"{prefix}{name}_lo": e.lo, f"{prefix}{name}_hi": e.hi,
                        f"{prefix}{name}_why": e.why})
        row.update({f"{prefix}n_baseline": self.baseline.n, f"{prefix}n_method": self.method.n,
                    f"{prefix}welch_t": self.welch.statistic, f"{prefix}welch_p": self.welch.p,
                    f"{prefix}mw_u": self.mann_whitney.statistic, f"{prefix}mw_p": self.mann_whitney.p,
                    f"{prefix}mw_min_p": self.mann_whitney.min_p,
                    f"{prefix}hedges_g": self.hedges_g, f"{prefix}p_improvement": self.p_improvement,
                    f"{prefix}sd": self.sd, f"{prefix}mde80": self.mde})
        return row

    def to_dict(self) -> dict:
        return asdict(self)


def two_group(baseline: Sequence[float], method: Sequence[float], level: float = LEVEL) -> TwoGroup:
    a, b = _clean(baseline), _clean(method)
    notes = []
    if min(len(a), len(b)) < 2:
        notes.append("fewer than 2 seeds in an arm: no interval or test")
    sd = pooled_sd(a, b)
    return TwoGroup(baseline=mean_ci(a, level), method=mean_ci(b, level), diff=welch_diff_ci(a, b, level),
                    welch=welch_t(a, b), mann_whitney=mann_whitney(a, b), hedges_g=hedges_g(a, b),
                    p_improvement=prob_improvement(a, b), sd=sd,
                    mde=min_detectable_effect(sd, len(a), len(b), 1 - level), notes=notes)
