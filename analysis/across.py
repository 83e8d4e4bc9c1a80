"""Across datasets, as the field reports it: IQM of normalised scores, the probability of
improvement, performance profiles (rliable's measures) and Friedman ranks with the Nemenyi
critical difference (Demšar 2006, autorank's diagram).

Scores are normalised by fixed references (`analysis.reference`: chance → 0, the stated upper
reference → 1), never by the baseline's own mean, so both arms carry their own uncertainty and a
bootstrap can resample both. Intervals are stratified bootstraps (runs resampled within each
dataset and arm, so no dataset crowds out another) with Hesterberg's expanded percentile, which
the simulation in `analysis.simulation` shows covering from 3 seeds per dataset; below that no
bootstrap interval is shown, and the estimate says why.

Why not rliable, autorank or scikit-posthocs: rliable pins an exact old `arch` (5.3.0), wants
score matrices with equal run counts, and its percentile intervals are the kind measured
under-covering at a few seeds; autorank refuses fewer than 5 datasets (the thesis has 4) and
picks its test from normality pre-tests; the numbers themselves are scipy (rankdata, trim_mean,
friedmanchisquare, studentized_range) and the code here is the resampling and bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as st

from .stats import ALPHA, LEVEL, Estimate, _clean, _rng

MIN_BOOTSTRAP_SEEDS = 3  # per arm and dataset; at 2 the stratified bootstrap covers ~65–80% (simulation)
N_BOOT = 2000
TRIM = 0.25  # the IQM trims a quarter at each end


def expanded_tail(n: int, level: float = LEVEL) -> float:
    """Hesterberg's expanded percentile: the tail probability to read the bootstrap distribution
    at so that a sample of n behaves like a t interval (Φ(−√(n/(n−1))·t_{n−1}) instead of α/2)."""
    if n < 2:
        return (1 - level) / 2
    return float(st.norm.cdf(-math.sqrt(n / (n - 1)) * st.t.ppf(0.5 + level / 2, n - 1)))


def _groups(scores: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    out = {k: _clean(v) for k, v in scores.items()}
    return {k: v for k, v in out.items() if len(v)}


def _resample(groups: Sequence[np.ndarray], n_resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [g[rng.integers(0, len(g), size=(n_resamples, len(g)))] for g in groups]


def _interval(boot: np.ndarray, value: float, n_min: int, n: int, level: float) -> Estimate:
    if not math.isfinite(value):
        return Estimate(value, n=n, why="no values")
    if n_min < MIN_BOOTSTRAP_SEEDS:
        return Estimate(value, n=n, why=f"needs ≥ {MIN_BOOTSTRAP_SEEDS} seeds per dataset")
    tail = expanded_tail(n_min, level)
    lo, hi = (float(q) for q in np.quantile(boot, [tail, 1 - tail]))
    if hi - lo <= 1e-12 * max(1.0, abs(value)):
        return Estimate(value, n=n, why="every resample gives the same value")
    return Estimate(value, lo, hi, n)


def iqm_by_arm(baseline: Mapping[str, Sequence[float]], method: Mapping[str, Sequence[float]],
               level: float = LEVEL, n_resamples: int = N_BOOT,
               seed: int | np.random.Generator | None = 0) -> tuple[Estimate, Estimate, Estimate]:
    """IQM of each arm's runs pooled over the datasets both arms have, and method − baseline,
    from one stratified bootstrap that resamples both arms (rliable's scheme). Scores should be
    normalised by fixed references first (`analysis.reference.normalise`)."""
    b, m = _groups(baseline), _groups(method)
    keys = [k for k in b if k in m]
    if not keys:
        return (Estimate(math.nan, why="no dataset with both arms"),) * 3
    gb, gm = [b[k] for k in keys], [m[k] for k in keys]
    pb, pm = np.concatenate(gb), np.concatenate(gm)
    vb, vm = float(st.trim_mean(pb, TRIM)), float(st.trim_mean(pm, TRIM))
    n_min = min(min(len(g) for g in gb), min(len(g) for g in gm))
    rng = _rng(seed)
    bb = st.trim_mean(np.concatenate(_resample(gb, n_resamples, rng), axis=1), TRIM, axis=1)
    bm = st.trim_mean(np.concatenate(_resample(gm, n_resamples, rng), axis=1), TRIM, axis=1)
    return (_interval(bb, vb, n_min, len(pb), level), _interval(bm, vm, n_min, len(pm), level),
            _interval(bm - bb, vm - vb, n_min, len(pb) + len(pm), level))


def _prob_improvement_rows(base: np.ndarray, meth: np.ndarray) -> np.ndarray:
    """P(method > baseline) per row of resampled arms (ties one half), via ranks: U / (n_m·n_b)."""
    n_m, n_b = meth.shape[-1], base.shape[-1]
    ranks = st.rankdata(np.concatenate([meth, base], axis=-1), axis=-1)
    u = ranks[..., :n_m].sum(axis=-1) - n_m * (n_m + 1) / 2
    return u / (n_m * n_b)


def mean_prob_improvement(baseline: Mapping[str, Sequence[float]], method: Mapping[str, Sequence[float]],
                          level: float = LEVEL, n_resamples: int = N_BOOT,
                          seed: int | np.random.Generator | None = 0) -> Estimate:
    """The average over datasets of P(a method run beats a baseline run), with a stratified
    bootstrap interval over both arms (rliable's probability of improvement)."""
    b, m = _groups(baseline), _groups(method)
    keys = [k for k in b if k in m]
    if not keys:
        return Estimate(math.nan, why="no dataset with both arms")
    value = float(np.mean([_prob_improvement_rows(b[k][None], m[k][None])[0] for k in keys]))
    rng = _rng(seed)
    boot = np.mean([_prob_improvement_rows(*_resample([b[k], m[k]], n_resamples, rng)) for k in keys], axis=0)
    n_min = min(min(len(b[k]), len(m[k])) for k in keys)
    return _interval(boot, value, n_min, sum(len(b[k]) + len(m[k]) for k in keys), level)


def performance_profile(scores: Mapping[str, Mapping[str, Sequence[float]]], taus: Sequence[float],
                        level: float = LEVEL, n_resamples: int = N_BOOT,
                        seed: int | np.random.Generator | None = 0) -> pd.DataFrame:
    """rliable's score distribution: for each arm and threshold τ, the fraction of runs scoring
    above τ (averaged over datasets, each weighing the same), with a stratified bootstrap band.
    scores: arm → dataset → normalised scores. Columns: arm, tau, fraction, lo, hi."""
    taus = np.asarray(taus, dtype=float)
    rng = _rng(seed)
    rows = []
    for arm, by_ds in scores.items():
        groups = list(_groups(by_ds).values())
        if not groups:
            continue
        frac = np.mean([(g[:, None] > taus[None, :]).mean(axis=0) for g in groups], axis=0)
        n_min = min(len(g) for g in groups)
        lo = hi = np.full(len(taus), math.nan)
        if n_min >= MIN_BOOTSTRAP_SEEDS:
            boot = np.mean([(r[:, :, None] > taus[None, None, :]).mean(axis=1)
                            for r in _resample(groups, n_resamples, rng)], axis=0)
            tail = expanded_tail(n_min, level)
            lo, hi = np.quantile(boot, tail, axis=0), np.quantile(boot, 1 - tail, axis=0)
        rows += [{"arm": arm, "tau": t, "fraction": f, "lo": a, "hi": z} for t, f, a, z in zip(taus, frac, lo, hi)]
    return pd.DataFrame(rows, columns=["arm", "tau", "fraction", "lo", "hi"])


# ---------------------------------------------------------------------------------------------
# Ranks over datasets: Friedman's test and the Nemenyi critical difference

@dataclass
class Ranking:
    """Mean ranks of k arms over N datasets (1 = best), Friedman's test of "all arms rank alike",
    and the Nemenyi critical difference: two arms whose mean ranks differ by less than `cd` are
    not significantly different at `alpha` (family-wise over all pairs)."""

    mean_ranks: pd.Series            # arm → mean rank, best first
    statistic: float = math.nan
    p: float = math.nan
    cd: float = math.nan
    n_datasets: int = 0
    alpha: float = ALPHA
    datasets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def k(self) -> int:
        return len(self.mean_ranks)

    def cliques(self) -> list[list[str]]:
        """Maximal runs of arms (in rank order) whose mean ranks all lie within `cd`: the bars of
        the critical-difference diagram."""
        if not math.isfinite(self.cd):
            return []
        names, r = list(self.mean_ranks.index), self.mean_ranks.to_numpy(dtype=float)
        out: list[list[str]] = []
        last_end = -1
        for i in range(len(r)):
            j = i
            while j + 1 < len(r) and r[j + 1] - r[i] < self.cd:
                j += 1
            if j > i and j > last_end:
                out.append(names[i:j + 1])
                last_end = j
        return out


def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Critical difference of mean ranks: q_α(k, ∞)/√2 · √(k(k+1) / 6N) (Demšar 2006, eq. 5)."""
    if k < 2 or n < 1:
        return math.nan
    q = float(st.studentized_range.ppf(1 - alpha, k, np.inf))
    return q / math.sqrt(2) * math.sqrt(k * (k + 1) / (6.0 * n))


def friedman_nemenyi(table: pd.DataFrame, higher_is_better: bool = True, alpha: float = ALPHA) -> Ranking:
    """table: one row per dataset, one column per arm (e.g. its seed-mean score). Datasets where
    any arm lacks a value are left out (and named)."""
    t = table.apply(pd.to_numeric, errors="coerce")
    dropped = [str(i) for i in t.index[t.isna().any(axis=1)]]
    t = t.dropna(axis=0, how="any")
    notes = [f"left out (an arm has no value): {', '.join(dropped)}"] if dropped else []
    k, n = t.shape[1], t.shape[0]
    if k == 0 or n == 0:
        return Ranking(pd.Series(dtype=float), notes=notes + ["no dataset with every arm"])
    ranks = st.rankdata(-t.to_numpy() if higher_is_better else t.to_numpy(), axis=1)
    mean_ranks = pd.Series(ranks.mean(axis=0), index=[str(c) for c in t.columns]).sort_values(kind="stable")
    out = Ranking(mean_ranks, n_datasets=n, alpha=alpha, datasets=[str(i) for i in t.index], notes=notes)
    if k < 3:
        out.notes.append(f"{k} arms: Friedman's test needs at least 3 (compare two arms with the Wilcoxon test)")
        return out
    if n < 2:
        out.notes.append(f"{n} dataset: ranks over datasets need at least 2")
        return out
    res = st.friedmanchisquare(*[t[c].to_numpy() for c in t.columns])
    out.statistic, out.p = float(res.statistic), float(res.pvalue)
    out.cd = nemenyi_cd(k, n, alpha)
    if n < 10:
        out.notes.append(f"{n} datasets: Friedman's p uses the χ² approximation, rough below ~10 datasets")
    return out


def score_table(values: pd.DataFrame, block: str, arm: str, metric: str,
                agg: Callable[[pd.Series], float] = np.mean) -> pd.DataFrame:
    """Blocks × arms table of an aggregate (the seed mean) of `metric`, for `friedman_nemenyi`."""
    if values.empty or metric not in values:
        return pd.DataFrame()
    return values.pivot_table(index=block, columns=arm, values=metric, aggfunc=agg)
