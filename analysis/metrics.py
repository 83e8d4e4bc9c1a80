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

from .stats import LEVEL, Estimate, bootstrap_ratio_ci, mean_ci

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


def mean_curve(epochs_df: pd.DataFrame, metric: str, level: float = LEVEL) -> pd.DataFrame:
    """Per-epoch mean over trials with a Student-t band: columns epoch, mean, lo, hi, n."""
    if metric not in epochs_df.columns or epochs_df.empty:
        return pd.DataFrame(columns=["epoch", "mean", "lo", "hi", "n"])
    rows = []
    for epoch, g in epochs_df.groupby("epoch", sort=True):
        est = mean_ci(g[metric].to_numpy(dtype=float), level)
        if est.n:
            rows.append({"epoch": int(epoch), "mean": est.value, "lo": est.lo, "hi": est.hi, "n": est.n})
    return pd.DataFrame(rows, columns=["epoch", "mean", "lo", "hi", "n"])


def per_trial(epochs_df: pd.DataFrame, fn) -> pd.Series:
    """Apply fn(trial's rows sorted by epoch) → float to every trial."""
    if epochs_df.empty:
        return pd.Series(dtype=float)
    # A loop rather than groupby.apply: apply's handling of the group key changed across pandas 2 → 3.
    values = {tid: float(fn(g)) for tid, g in epochs_df.sort_values("epoch").groupby(TRIAL, sort=True)}
    return pd.Series(values, dtype=float)


def convergence(curves: Mapping[str, pd.DataFrame], baseline: str, metric: str = "test_top1",
                frac: float = 0.9) -> pd.DataFrame:
    """Epochs (and seconds) each recipe needs to reach `frac` × the baseline's best.

    The target is `frac` times the maximum of the baseline's seed-mean curve (the thesis's "SOTA
    reaches 90 at epoch 9"). For each recipe: the epoch where its seed-mean curve first reaches it,
    the mean over the seeds that reach it and how many do, and the mean training time (seconds,
    cumulative epoch_seconds) until then. speedup = baseline epochs / recipe epochs (mean curves).
    """
    cols = ["recipe", "target", "epochs_mean_curve", "epochs_seed_mean", "seeds_reached", "seeds",
            "seconds_to_target", "speedup"]
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
        firsts = per_trial(df, lambda g: first_epoch_reaching(g["epoch"], g[metric], target))
        secs = per_trial(df, lambda g: _seconds_until(g, metric, target))
        reached = firsts.dropna()
        rows.append({"recipe": recipe, "target": target, "epochs_mean_curve": on_mean,
                     "epochs_seed_mean": float(reached.mean()) if len(reached) else math.nan,
                     "seeds_reached": int(len(reached)), "seeds": int(len(firsts)),
                     "seconds_to_target": float(secs.dropna().mean()) if secs.notna().any() else math.nan})
    out = pd.DataFrame(rows, columns=cols[:-1])
    base_epochs = out.loc[out.recipe == baseline, "epochs_mean_curve"]
    b = float(base_epochs.iloc[0]) if len(base_epochs) else math.nan
    out["speedup"] = [b / e if math.isfinite(b) and math.isfinite(e) and e > 0 else math.nan
                      for e in out["epochs_mean_curve"]]
    return out


def _seconds_until(g: pd.DataFrame, metric: str, target: float) -> float:
    if "epoch_seconds" not in g.columns:
        return math.nan
    e = first_epoch_reaching(g["epoch"], g[metric], target)
    if not math.isfinite(e):
        return math.nan
    return float(g.loc[g["epoch"] <= e, "epoch_seconds"].sum())


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


def time_ratio(baseline_trials: pd.DataFrame, method_trials: pd.DataFrame) -> dict[str, Estimate]:
    """Speed of the method relative to the baseline, each as "× faster" (> 1 = method faster):
    baseline s/epoch ÷ method s/epoch, and method samples/s ÷ baseline samples/s."""
    out: dict[str, Estimate] = {}
    for col in ("seconds_per_epoch", "train_seconds_per_epoch", "total_seconds"):
        if col in baseline_trials and col in method_trials:
            out[col] = bootstrap_ratio_ci(baseline_trials[col], method_trials[col])
    if "samples_per_s" in baseline_trials and "samples_per_s" in method_trials:
        out["samples_per_s"] = bootstrap_ratio_ci(method_trials["samples_per_s"], baseline_trials["samples_per_s"])
    return out
