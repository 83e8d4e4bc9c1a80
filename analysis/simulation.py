"""How well the report's intervals and verdicts hold, measured by simulation.

    python -m analysis.simulation                 # the table in docs/statistics.md (500 reps per cell)
    python -m analysis.simulation --reps 100 --n 3

Each row is one thing the report shows, each column a seed count per arm; each cell is a rate over
`reps` simulated experiments with a fixed seed, for the method the report used before ("before")
and the one it uses now ("now"). A coverage counts the experiments where an interval was shown
("not shown": the report shows none at that seed count). Data are normal unless the row says
otherwise; the true value each interval should cover is known by construction (or, for IQMs of
mixtures, from 400,000 draws).

The tests in tests/analysis/test_simulation.py run a few of these cells with fewer reps and fail
if the displayed Δ interval covers less than 92% at 3 seeds or the primary test's false-positive
rate exceeds 6%.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from . import across, stats
from .stats import ALPHA

BOOT = 2000  # resamples per percentile bootstrap here (the tables used 9999; coverage barely moves)


# ---------------------------------------------------------------------------------------------
# The methods the report used before, kept here as the measured reference

def _before_diff(a, b, rng) -> stats.Estimate:
    return stats.bootstrap_diff_ci(a, b, n_resamples=BOOT, seed=rng)


def _before_ratio(num, den, rng) -> stats.Estimate:
    return stats.bootstrap_ratio_ci(num, den, n_resamples=BOOT, seed=rng)


def _before_iqm(baseline: list[np.ndarray], method: list[np.ndarray], rng) -> tuple[float, float]:
    """The old across-dataset IQM: each method run ÷ its dataset's baseline mean (a fixed number,
    not resampled), pooled, with a percentile stratified bootstrap over the method's runs only."""
    norm = [m / b.mean() for b, m in zip(baseline, method)]
    draws = np.concatenate([g[rng.integers(0, len(g), size=(BOOT, len(g)))] for g in norm], axis=1)
    boot = st.trim_mean(draws, 0.25, axis=1)
    return tuple(np.quantile(boot, [0.025, 0.975]))


def _before_consistent(ref: np.ndarray, variants: list[np.ndarray]) -> bool:
    """The old "no effect" verdict: consistent when no Holm-adjusted Welch test is significant."""
    adj, reject = stats.holm([stats.welch_t(ref, v).p for v in variants])
    return not reject.any()


class _Tally:
    """Coverage over the replications where an interval was shown (NaN if none was)."""

    def __init__(self) -> None:
        self.shown = self.hits = 0

    def add(self, est: stats.Estimate, true: float) -> None:
        if est.has_interval:
            self.shown += 1
            self.hits += est.covers(true)

    @property
    def rate(self) -> float:
        return self.hits / self.shown if self.shown else math.nan


# ---------------------------------------------------------------------------------------------
# Scenarios: each returns (before, now) rates for n seeds per arm; NaN where there was no "before"

@dataclass(frozen=True)
class Row:
    key: str
    label: str
    fn: Callable[[int, int, np.random.Generator], tuple[float, float]]
    kind: str = "coverage"  # or "rate"


def delta_coverage(n: int, reps: int, rng: np.random.Generator, sd_method: float = 1.0,
                   diverge: float = 0.0, low: float = -8.0) -> tuple[float, float]:
    """Coverage of the true Δ = 1 (baseline N(0, 1), method N(1, sd_method)); with `diverge`, each
    seed independently ends at `low` (a diverged run) with that probability, which moves the true
    means to the mixtures'."""
    true = 1.0 - diverge  # (1 − d)·1 + d·low − ((1 − d)·0 + d·low)
    before, now = _Tally(), _Tally()
    for _ in range(reps):
        a, b = rng.normal(0.0, 1.0, n), rng.normal(1.0, sd_method, n)
        if diverge:
            a[rng.random(n) < diverge] = low
            b[rng.random(n) < diverge] = low
        before.add(_before_diff(a, b, rng), true)
        now.add(stats.two_group(a, b).diff, true)
    return before.rate, now.rate


def null_false_positive(n: int, reps: int, rng: np.random.Generator, sd_method: float = 1.0) -> tuple[float, float]:
    """Under no effect: how often the shown Δ interval excludes 0 (before: the bootstrap; now: the
    Welch interval, which excludes 0 exactly when the primary test's p < 0.05)."""
    fp_b = fp_n = 0
    for _ in range(reps):
        a, b = rng.normal(0.0, 1.0, n), rng.normal(0.0, sd_method, n)
        fp_b += _before_diff(a, b, rng).excludes(0.0)
        fp_n += stats.welch_t(a, b).significant()
    return fp_b / reps, fp_n / reps


_TASKS = np.array([40.0, 30.0, 55.0, 25.0])  # four datasets' baseline means (top-1 %)
_CHANCE = np.array([100 / 102, 100 / 100, 100 / 196, 100 / 37])
_GAIN, _SD = 3.0, 2.0


def _true_iqm(means: np.ndarray, normalise: Callable, rng) -> float:
    draws = np.concatenate([normalise(rng.normal(m, _SD, 100_000), i) for i, m in enumerate(means)])
    return float(st.trim_mean(draws, 0.25))


def iqm_coverage(n: int, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """Four datasets, method = baseline + 3 points, SD 2. Before: IQM of method runs ÷ baseline
    mean (truth: the same with the true baseline mean). Now: IQM(method) − IQM(baseline) of
    chance-normalised scores, both arms resampled (truth: from 400,000 draws)."""
    from .reference import normalise

    truth_rng = np.random.default_rng(12345)
    true_before = _true_iqm(_TASKS + _GAIN, lambda x, i: x / _TASKS[i], truth_rng)
    fix = lambda x, i: normalise(x, _CHANCE[i])  # noqa: E731
    true_now = _true_iqm(_TASKS + _GAIN, fix, truth_rng) - _true_iqm(_TASKS, fix, truth_rng)
    before, now = _Tally(), _Tally()
    for _ in range(reps):
        base = [rng.normal(m, _SD, n) for m in _TASKS]
        meth = [rng.normal(m + _GAIN, _SD, n) for m in _TASKS]
        before.add(stats.Estimate(math.nan, *_before_iqm(base, meth, rng)), true_before)
        nb = {str(i): fix(x, i) for i, x in enumerate(base)}
        nm = {str(i): fix(x, i) for i, x in enumerate(meth)}
        now.add(across.iqm_by_arm(nb, nm, n_resamples=BOOT, seed=rng)[2], true_now)
    return before.rate, now.rate


def prob_improvement_coverage(n: int, reps: int, rng: np.random.Generator, gain: float = 1.0) -> tuple[float, float]:
    """Mean over four datasets of P(method run > baseline run), true value Φ(gain / √2) (SD 1).
    Before: a point estimate without an interval."""
    true = float(st.norm.cdf(gain / math.sqrt(2)))
    now = _Tally()
    for _ in range(reps):
        base = {str(i): rng.normal(m, 1.0, n) for i, m in enumerate(_TASKS)}
        meth = {str(i): rng.normal(m + gain, 1.0, n) for i, m in enumerate(_TASKS)}
        now.add(across.mean_prob_improvement(base, meth, n_resamples=BOOT, seed=rng), true)
    return math.nan, now.rate


def time_ratio_coverage(n: int, reps: int, rng: np.random.Generator, spread: float = 0.1) -> tuple[float, float]:
    """Seconds per epoch, lognormal run-to-run spread `spread` (CV), baseline 2× slower: coverage
    of the true ratio of means (2)."""
    s = math.sqrt(math.log(1 + spread ** 2))
    before, now = _Tally(), _Tally()
    for _ in range(reps):
        base = 20.0 * np.exp(rng.normal(-s * s / 2, s, n))
        meth = 10.0 * np.exp(rng.normal(-s * s / 2, s, n))
        before.add(_before_ratio(base, meth, rng), 2.0)
        now.add(stats.log_ratio_ci(base, meth), 2.0)
    return before.rate, now.rate


def speedup_coverage(n: int, reps: int, rng: np.random.Generator, spread: float = 0.2) -> tuple[float, float]:
    """Epochs to the target per seed: lognormal (CV `spread`) around 30 (baseline) and 10 (method),
    continuous (no rounding); coverage of the true ratio of means, 3. Before: no interval."""
    s = math.sqrt(math.log(1 + spread ** 2))
    now = _Tally()
    for _ in range(reps):
        base = 30.0 * np.exp(rng.normal(-s * s / 2, s, n))
        meth = 10.0 * np.exp(rng.normal(-s * s / 2, s, n))
        now.add(stats.log_ratio_ci(base, meth), 3.0)
    return math.nan, now.rate


def equivalence_with_effect(n: int, reps: int, rng: np.random.Generator, effect: float = 2.0,
                            margin: float = 1.0) -> tuple[float, float]:
    """A "no effect" claim over a reference and two variants, one with a real 2-SD effect (SD 1,
    margin ±1): how often "no effect" is still the verdict (before: "consistent"; now:
    "equivalent within ±1")."""
    said_b = said_n = 0
    for _ in range(reps):
        ref = rng.normal(0.0, 1.0, n)
        variants = [rng.normal(0.0, 1.0, n), rng.normal(effect, 1.0, n)]
        said_b += _before_consistent(ref, variants)
        said_n += stats.equivalence_family(ref, variants, margin).verdict == stats.EQUIVALENT
    return said_b / reps, said_n / reps


def equivalence_without_effect(n: int, reps: int, rng: np.random.Generator, margin: float = 1.0,
                               sd: float = 0.25) -> tuple[float, float]:
    """The same claim when nothing differs (SD 0.25 point, margin ±1): how often "equivalent" is
    concluded (the power of the equivalence test; before, "consistent")."""
    said_b = said_n = 0
    for _ in range(reps):
        ref = rng.normal(0.0, sd, n)
        variants = [rng.normal(0.0, sd, n), rng.normal(0.0, sd, n)]
        said_b += _before_consistent(ref, variants)
        said_n += stats.equivalence_family(ref, variants, margin).verdict == stats.EQUIVALENT
    return said_b / reps, said_n / reps


ROWS: list[Row] = [
    Row("delta", "Δ (method − baseline): bootstrap before, Welch t now", delta_coverage),
    Row("delta_unequal", "the same, method SD 2× the baseline's", lambda n, r, g: delta_coverage(n, r, g, 2.0)),
    Row("delta_diverged", "the same, 10% of seeds diverged", lambda n, r, g: delta_coverage(n, r, g, diverge=0.1)),
    Row("iqm", "IQM across 4 datasets: ÷ baseline mean before, fixed refs + both arms now", iqm_coverage),
    Row("prob_improvement", "mean P(method > baseline) over 4 datasets (no interval before)",
        prob_improvement_coverage),
    Row("time_ratio_5", "time ratio, 5% run-to-run spread", lambda n, r, g: time_ratio_coverage(n, r, g, 0.05)),
    Row("time_ratio_20", "time ratio, 20% run-to-run spread", lambda n, r, g: time_ratio_coverage(n, r, g, 0.20)),
    Row("speedup", "convergence speed-up, 20% spread in epochs to target (no interval before)", speedup_coverage),
    Row("null_fp", "Δ interval excludes 0 under the null (false positives)", null_false_positive, "rate"),
    Row("null_fp_unequal", "the same, method SD 2× the baseline's",
        lambda n, r, g: null_false_positive(n, r, g, 2.0), "rate"),
    Row("equiv_effect", "\"no effect\" verdict given with a real 2-SD effect (margin ±1 SD)",
        equivalence_with_effect, "rate"),
    Row("equiv_null", "\"equivalent\" concluded when nothing differs (SD 0.25, margin ±1)",
        equivalence_without_effect, "rate"),
]


def run(ns=(2, 3, 5, 10), reps: int = 500, seed: int = 0, keys: list[str] | None = None) -> pd.DataFrame:
    """One row per (scenario, n): before, now (rates in [0, 1])."""
    out = []
    for i, row in enumerate(ROWS):
        if keys and row.key not in keys:
            continue
        for n in ns:
            rng = np.random.default_rng([seed, i, n])
            before, now = row.fn(n, reps, rng)
            out.append({"key": row.key, "label": row.label, "kind": row.kind, "n": n, "before": before, "now": now})
    return pd.DataFrame(out)


def _pct(x: float, missing: str) -> str:
    return missing if not math.isfinite(x) else f"{100 * x:.0f}%"


def markdown(df: pd.DataFrame) -> str:
    ns = sorted(df["n"].unique())
    lines = ["| what the report shows | " + " | ".join(f"n={n}: before → now" for n in ns) + " |",
             "|---|" + "---|" * len(ns)]
    for key, g in df.groupby("key", sort=False):
        g = g.set_index("n")
        cells = []
        for n in ns:
            b, now = g.loc[n, "before"], g.loc[n, "now"]
            cells.append(f"{_pct(b, 'no interval')} → {_pct(now, 'not shown')}")
        lines.append(f"| {g['label'].iloc[0]} ({g['kind'].iloc[0]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m analysis.simulation", description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", default="2,3,5,10", help="seed counts per arm, comma-separated")
    p.add_argument("--rows", default="", help="only these scenario keys (comma-separated)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    df = run(tuple(int(x) for x in args.n.split(",")), args.reps, args.seed,
             [k for k in args.rows.split(",") if k] or None)
    print(markdown(df))
    print(f"\n{args.reps} replications per cell, seed {args.seed}, nominal level {1 - ALPHA:.0%}; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
