"""Metrics derived from learning curves: convergence speed and time.

A curve is the per-epoch rows of one trial (`epoch` is 1-based, as the trainer records it).
Functions here take the long per-epoch table (`trial_id`, `epoch`, metric columns) and return
tables; "never reached" is NaN with a count beside it, never an invented epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats as st

from .stats import LEVEL, Estimate, log_ratio_ci

TRIAL = "trial_id"


def first_epoch_reaching(epochs, values, threshold: float) -> float:
    """First epoch whose value is ≥ threshold; NaN if the curve never gets there.
    Epochs without a value (evaluation skipped) are ignored."""
    e = np.asarray(epochs, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(e, kind="stable")
    e, v = e[order], v[order]
    hit = np.flatnonzero(np.isfinite(v) & (v >= threshold))
    return float(e[hit[0]]) if len(hit) else math.nan


def loss_settling_epoch(epochs, values, frac: float = 0.9) -> float:
    """First epoch by which a (decreasing) loss has made `frac` of its total drop from the first
    recorded value to its minimum: a scale-free measure of how fast a loss converges, comparable
    across temperatures that shift the loss's level. NaN if the loss never decreased."""
    e = np.asarray(epochs, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    e, v = e[ok], v[ok]
    if len(v) < 2:
        return math.nan
    order = np.argsort(e, kind="stable")
    e, v = e[order], v[order]
    drop = v[0] - v.min()
    if drop <= 0:
        return math.nan
    target = v[0] - frac * drop
    return float(e[np.flatnonzero(v <= target)[0]])


def settling_epochs(epochs_df: pd.DataFrame, metric: str, frac: float = 0.9) -> pd.Series:
    """`loss_settling_epoch` of every trial in one groupby: trial_id → epoch (NaN where the loss
    never decreased or has fewer than two finite values)."""
    if epochs_df.empty or metric not in epochs_df.columns:
        return pd.Series(dtype=float)
    trials = pd.Index(epochs_df[TRIAL].unique(), name=TRIAL)
    e = epochs_df[[TRIAL, "epoch", metric]].copy()
    e[metric] = pd.to_numeric(e[metric], errors="coerce").replace([np.inf, -np.inf], np.nan)
    e = e.dropna(subset=[metric]).sort_values([TRIAL, "epoch"], kind="stable")
    g = e.groupby(TRIAL)[metric]
    first, low, count = g.transform("first"), g.transform("min"), g.transform("count")
    drop = first - low
    hit = e[(count >= 2) & (drop > 0) & (e[metric] <= first - frac * drop)]
    return hit.groupby(TRIAL)["epoch"].min().astype(float).reindex(trials)


def mean_curve(epochs_df: pd.DataFrame, metric: str, level: float = LEVEL) -> pd.DataFrame:
    """Per-epoch mean over trials with a Student-t band: columns epoch, mean, lo, hi, n (as
    `stats.mean_ci`: no band at one trial or where every trial has the same value)."""
    cols = ["epoch", "mean", "lo", "hi", "n"]
    if metric not in epochs_df.columns or epochs_df.empty:
        return pd.DataFrame(columns=cols)
    v = pd.to_numeric(epochs_df[metric], errors="coerce").replace([np.inf, -np.inf], np.nan)
    g = v.groupby(epochs_df["epoch"]).agg(["mean", "std", "count", "min", "max"])
    g = g[g["count"] > 0]
    n = g["count"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = st.t.ppf(0.5 + level / 2, n - 1) * g["std"].to_numpy() / np.sqrt(n)
    h = np.where((n > 1) & (g["max"] > g["min"]).to_numpy(), h, np.nan)
    mean = g["mean"].to_numpy()
    return pd.DataFrame({"epoch": g.index.astype(int), "mean": mean, "lo": mean - h, "hi": mean + h,
                         "n": n.astype(int)}, columns=cols).reset_index(drop=True)


def per_trial(epochs_df: pd.DataFrame, fn) -> pd.Series:
    """Apply fn(trial's rows sorted by epoch) → float to every trial: a Python loop over trials,
    for notebooks and one-off measures; the report uses the groupby forms (`epochs_reaching`,
    `settling_epochs`)."""
    if epochs_df.empty:
        return pd.Series(dtype=float)
    # A loop rather than groupby.apply: apply's handling of the group key changed across pandas 2 → 3.
    values = {tid: float(fn(g)) for tid, g in epochs_df.sort_values("epoch").groupby(TRIAL, sort=True)}
    return pd.Series(values, dtype=float)


def epochs_reaching(epochs_df: pd.DataFrame, metric: str, threshold: float) -> pd.DataFrame:
    """Per trial: the first epoch whose `metric` is ≥ threshold (NaN if never) and the training
    seconds (cumulative epoch_seconds) up to and including it. One groupby, no per-trial loop."""
    trials = pd.Index(epochs_df[TRIAL].unique(), name=TRIAL)
    v = pd.to_numeric(epochs_df[metric], errors="coerce")
    first = epochs_df.loc[v >= threshold].groupby(TRIAL)["epoch"].min().reindex(trials).astype(float)
    out = pd.DataFrame({"epoch": first})
    if "epoch_seconds" in epochs_df.columns:
        upto = epochs_df[TRIAL].map(first)
        secs = epochs_df.loc[epochs_df["epoch"] <= upto].groupby(TRIAL)["epoch_seconds"].sum()
        out["seconds"] = secs.reindex(trials).where(first.notna())
    else:
        out["seconds"] = math.nan
    return out


def convergence(curves: Mapping[str, pd.DataFrame], baseline: str, metric: str = "test_top1",
                frac: float = 0.9) -> pd.DataFrame:
    """Epochs (and seconds) each recipe needs to reach `frac` × the baseline's best.

    The target is `frac` times the maximum of the baseline's seed-mean curve (the thesis's "SOTA
    reaches 90 at epoch 9"). For each recipe: the epoch where its seed-mean curve first reaches it,
    each seed's first epoch (`firsts`, NaN for a seed that never does), the mean over the seeds
    that reach it and how many do, and the mean training time (seconds) until then.
    speedup = baseline epochs / recipe epochs (mean curves); `compare` reports the per-seed one.
    """
    cols = ["recipe", "target", "epochs_mean_curve", "epochs_seed_mean", "seeds_reached", "seeds",
            "seconds_to_target", "firsts", "speedup"]
    base = curves.get(baseline)
    if base is None or base.empty or metric not in base.columns:
        return pd.DataFrame(columns=cols)
    base_curve = mean_curve(base, metric)
    best = float(base_curve["mean"].max()) if len(base_curve) else math.nan
    if not math.isfinite(best) or best <= 0:
        return pd.DataFrame(columns=cols)  # a baseline that never learns sets no target
    target = frac * best
    rows = []
    for recipe, df in curves.items():
        if df.empty or metric not in df.columns:
            continue
        mc = mean_curve(df, metric)
        on_mean = first_epoch_reaching(mc["epoch"], mc["mean"], target)
        per = epochs_reaching(df, metric, target)
        reached = per["epoch"].dropna()
        secs = per["seconds"].dropna()
        rows.append({"recipe": recipe, "target": target, "epochs_mean_curve": on_mean,
                     "epochs_seed_mean": float(reached.mean()) if len(reached) else math.nan,
                     "seeds_reached": int(len(reached)), "seeds": int(len(per)),
                     "seconds_to_target": float(secs.mean()) if len(secs) else math.nan,
                     "firsts": per["epoch"].to_numpy(dtype=float)})
    out = pd.DataFrame(rows, columns=cols[:-1])
    base_epochs = out.loc[out.recipe == baseline, "epochs_mean_curve"]
    b = float(base_epochs.iloc[0]) if len(base_epochs) else math.nan
    out["speedup"] = [b / e if math.isfinite(b) and math.isfinite(e) and e > 0 else math.nan
                      for e in out["epochs_mean_curve"]]
    return out


TIME_COLUMNS = {"seconds_per_epoch": "epoch_seconds", "train_seconds_per_epoch": "train_seconds",
                "samples_per_s": "samples_per_s"}


def time_per_trial(epochs_df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: mean seconds per epoch (all / training only), mean samples/s, total."""
    if epochs_df.empty:
        return pd.DataFrame(columns=[TRIAL, *TIME_COLUMNS, "total_seconds"])
    agg = {}
    for out, col in TIME_COLUMNS.items():
        if col in epochs_df.columns:
            agg[out] = (col, "mean")
    if "epoch_seconds" in epochs_df.columns:
        agg["total_seconds"] = ("epoch_seconds", "sum")
    return epochs_df.groupby(TRIAL).agg(**agg).reset_index()


def time_ratio(baseline_trials: pd.DataFrame, method_trials: pd.DataFrame, level: float = LEVEL) -> dict[str, Estimate]:
    """Speed of the method relative to the baseline, each as "× faster" (> 1 = method faster):
    baseline s/epoch ÷ method s/epoch, and method samples/s ÷ baseline samples/s; ratios of
    geometric means with a Welch interval on the log scale (`stats.log_ratio_ci`). The caller
    checks that both arms ran on the same hardware (`compare.hardware_check`)."""
    out: dict[str, Estimate] = {}
    for col in ("seconds_per_epoch", "train_seconds_per_epoch", "total_seconds"):
        if col in baseline_trials and col in method_trials:
            out[col] = log_ratio_ci(baseline_trials[col], method_trials[col], level)
    if "samples_per_s" in baseline_trials and "samples_per_s" in method_trials:
        out["samples_per_s"] = log_ratio_ci(method_trials["samples_per_s"], baseline_trials["samples_per_s"], level)
    return out
