"""Statistics for comparing recipes over seeds and datasets.

Every function takes plain arrays (one value per seed, or per dataset) and returns plain numbers,
so a notebook can use them on anything. Undefined quantities come back as NaN, never as 0: with
one seed there is no confidence interval, with zero variance there is no t statistic.

The sample sizes here are tiny (a handful of seeds, four datasets), so each result carries what
limits it: the smallest p-value the test can produce at all, and how many values it used.
"""

from __future__ import annotations

import contextlib
import gc
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

LEVEL = 0.95
ALPHA = 0.05
N_RESAMPLES = 9999
EXACT_PERMUTATIONS = 50_000  # enumerate a rank test's null distribution up to this many splits


def _clean(x: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    return a[np.isfinite(a)]


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# Estimates with intervals

@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval; lo/hi are NaN when no interval exists."""

    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0

    def covers(self, x: float) -> bool:
        return bool(self.lo <= x <= self.hi)

    def fmt(self, digits: int = 2) -> str:
        if not math.isfinite(self.value):
            return "n/a"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def mean_ci(x: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean with a Student-t interval (the honest choice for 2–10 seeds: wide when n is small)."""
    a = _clean(x)
    n = len(a)
    if n == 0:
        return Estimate(math.nan, n=0)
    m = float(a.mean())
    if n == 1:
        return Estimate(m, n=1)
    se = float(a.std(ddof=1)) / math.sqrt(n)
    h = float(st.t.ppf(0.5 + level / 2, n - 1)) * se
    return Estimate(m, m - h, m + h, n)


def bootstrap_ci(x: Sequence[float], statistic: Callable = np.mean, level: float = LEVEL,
                 n_resamples: int = N_RESAMPLES, method: str = "percentile",
                 seed: int | np.random.Generator | None = 0) -> Estimate:
    """Bootstrap interval of a one-sample statistic (scipy.stats.bootstrap).

    Percentile intervals are the default because BCa is undefined for the constant or two-value
    samples that a few seeds produce. With fewer than ~5 values any bootstrap interval is too
    narrow (it cannot see beyond the observed range): prefer `mean_ci` there.
    """
    a = _clean(x)
    if len(a) == 0:
        return Estimate(math.nan, n=0)
    value = float(statistic(a))
    if len(a) == 1:
        return Estimate(value, n=1)
    if np.ptp(a) == 0:
        return Estimate(value, value, value, len(a))
    res = st.bootstrap((a,), lambda s, axis=-1: statistic(s, axis=axis), confidence_level=level,
                       n_resamples=n_resamples, method=method, vectorized=True, random_state=_rng(seed))
    return Estimate(value, float(res.confidence_interval.low), float(res.confidence_interval.high), len(a))


def bootstrap_diff_ci(baseline: Sequence[float], method: Sequence[float], level: float = LEVEL,
                      n_resamples: int = N_RESAMPLES, seed: int | np.random.Generator | None = 0) -> Estimate:
    """mean(method) − mean(baseline), seeds resampled independently within each group."""
    a, b = _clean(baseline), _clean(method)
    if len(a) == 0 or len(b) == 0:
        return Estimate(math.nan, n=0)
    value = float(b.mean() - a.mean())
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(value, n=n)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Estimate(value, value, value, n)
    res = st.bootstrap((b, a), lambda y, x, axis=-1: y.mean(axis=axis) - x.mean(axis=axis),
                       confidence_level=level, n_resamples=n_resamples, method="percentile",
                       vectorized=True, paired=False, random_state=_rng(seed))
    return Estimate(value, float(res.confidence_interval.low), float(res.confidence_interval.high), n)


def bootstrap_ratio_ci(numerator: Sequence[float], denominator: Sequence[float], level: float = LEVEL,
                       n_resamples: int = N_RESAMPLES, seed: int | np.random.Generator | None = 0) -> Estimate:
    """mean(numerator) / mean(denominator) with an independent-resampling percentile interval."""
    a, b = _clean(numerator), _clean(denominator)
    if len(a) == 0 or len(b) == 0 or b.mean() == 0:
        return Estimate(math.nan, n=0)
    value = float(a.mean() / b.mean())
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(value, n=n)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Estimate(value, value, value, n)
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
    """Welch's t-test (scipy.stats.ttest_ind, equal_var=False), method − baseline."""
    a, b = _clean(baseline), _clean(method)
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return TestResult(math.nan, math.nan, n, note="needs ≥2 values per group")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        # No variance at all: t is undefined (0/0 or x/0); say so rather than guess.
        return TestResult(math.nan, math.nan, n, note="undefined: zero variance in both groups")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.ttest_ind(b, a, equal_var=False)
    return TestResult(float(res.statistic), float(res.pvalue), n)


def mw_min_p(n1: int, n2: int) -> float:
    """Smallest two-sided exact Mann–Whitney p for sample sizes n1, n2 (complete separation)."""
    if n1 < 1 or n2 < 1:
        return math.nan
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def mann_whitney(baseline: Sequence[float], method: Sequence[float]) -> TestResult:
    """Two-sided Mann–Whitney U (scipy.stats.mannwhitneyu); statistic is U of the method."""
    a, b = _clean(baseline), _clean(method)
    n = len(a) + len(b)
    if len(a) < 1 or len(b) < 1:
        return TestResult(math.nan, math.nan, n, note="needs ≥1 value per group")
    min_p = mw_min_p(len(b), len(a))
    method: object = "auto"
    if (min(len(a), len(b)) >= 2 and len(np.unique(np.concatenate([a, b]))) < n
            and math.comb(n, len(a)) <= EXACT_PERMUTATIONS):
        # Ties (common: settling epochs, accuracies on a small test set) push scipy to its normal
        # approximation, which with 3 seeds a side reports p = 0.047 where the exact permutation
        # distribution cannot go below 0.1. Enumerate instead while that is cheap.
        method = st.PermutationMethod(n_resamples=np.inf)
    res = st.mannwhitneyu(b, a, alternative="two-sided", method=method)
    note = f"smallest attainable p = {min_p:.3g}" if min_p > ALPHA else ""
    return TestResult(float(res.statistic), float(res.pvalue), n, min_p, note)


def hedges_g(baseline: Sequence[float], method: Sequence[float]) -> float:
    """Standardised mean difference (method − baseline) with the small-sample correction J."""
    a, b = _clean(baseline), _clean(method)
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return math.nan
    pooled = math.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / (n1 + n2 - 2))
    if pooled == 0:
        return math.nan  # undefined, not infinite: the data carry no scale
    j = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)
    return float(j * (b.mean() - a.mean()) / pooled)


def prob_improvement(baseline: Sequence[float], method: Sequence[float]) -> float:
    """P(method > baseline) for a random pair of runs, ties counting one half (= U / n1·n2)."""
    a, b = _clean(baseline), _clean(method)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    diff = b[:, None] - a[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


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
# Across datasets

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


def stratified_bootstrap_iqm(scores: Mapping[str, Sequence[float]], level: float = LEVEL,
                             n_resamples: int = 2000,
                             seed: int | np.random.Generator | None = 0) -> Estimate:
    """IQM of runs pooled over tasks, CI by resampling runs within each task (rliable's scheme).

    Each resample keeps every task's run count, so a task with more seeds cannot crowd out the
    others.
    """
    groups = [_clean(v) for v in scores.values()]
    groups = [g for g in groups if len(g)]
    if not groups:
        return Estimate(math.nan, n=0)
    pooled = np.concatenate(groups)
    value = iqm(pooled)
    if all(len(g) < 2 for g in groups):
        return Estimate(value, n=len(pooled))
    rng = _rng(seed)
    draws = np.concatenate([g[rng.integers(0, len(g), size=(n_resamples, len(g)))] for g in groups], axis=1)
    boot = st.trim_mean(draws, 0.25, axis=1)
    tail = (1 - level) / 2
    return Estimate(value, float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail)), len(pooled))


def normalise_by_baseline(baseline: Sequence[float], values: Sequence[float]) -> np.ndarray:
    """values / mean(baseline) of the same dataset; NaN where the baseline mean is 0 or missing."""
    a = _clean(baseline)
    v = np.asarray(values, dtype=float)
    if len(a) == 0 or a.mean() == 0:
        return np.full(v.shape, math.nan)
    return v / a.mean()


# ---------------------------------------------------------------------------------------------
# One call for a whole two-group comparison

@dataclass
class TwoGroup:
    """Everything the compare table shows for one metric on one dataset."""

    baseline: Estimate
    method: Estimate
    diff: Estimate
    welch: TestResult
    mann_whitney: TestResult
    hedges_g: float
    p_improvement: float
    notes: list[str] = field(default_factory=list)

    def as_row(self, prefix: str = "") -> dict[str, float | str | int]:
        row: dict[str, float | str | int] = {}
        for name in ("baseline", "method", "diff"):
            e: Estimate = getattr(self, name)
            row.update({f"{prefix}{name}_mean": e.value, f"{prefix}{name}_lo": e.lo, f"{prefix}{name}_hi": e.hi})
        row.update({f"{prefix}n_baseline": self.baseline.n, f"{prefix}n_method": self.method.n,
                    f"{prefix}welch_t": self.welch.statistic, f"{prefix}welch_p": self.welch.p,
                    f"{prefix}mw_u": self.mann_whitney.statistic, f"{prefix}mw_p": self.mann_whitney.p,
                    f"{prefix}mw_min_p": self.mann_whitney.min_p,
                    f"{prefix}hedges_g": self.hedges_g, f"{prefix}p_improvement": self.p_improvement})
        return row

    def to_dict(self) -> dict:
        return asdict(self)


def two_group(baseline: Sequence[float], method: Sequence[float], level: float = LEVEL,
              seed: int | np.random.Generator | None = 0) -> TwoGroup:
    a, b = _clean(baseline), _clean(method)
    notes = []
    if min(len(a), len(b)) < 2:
        notes.append("fewer than 2 seeds in a group: no interval or test")
    elif min(len(a), len(b)) < 5:
        notes.append("fewer than 5 seeds: bootstrap intervals are too narrow, read the t interval")
    return TwoGroup(baseline=mean_ci(a, level), method=mean_ci(b, level),
                    diff=bootstrap_diff_ci(a, b, level, seed=seed), welch=welch_t(a, b),
                    mann_whitney=mann_whitney(a, b), hedges_g=hedges_g(a, b),
                    p_improvement=prob_improvement(a, b), notes=notes)
