"""Ablation sweeps: what was swept, each variant against the default, with Holm correction.

    for ab in find_ablations(store):
        ab.key, ab.values, ab.default   # the swept key, its values (labels), the default's label
        ab.table                        # one row per (dataset, value, metric) with tests vs default

A sweep is an ablation when some config key other than seed and dataset takes several values
among its trials. The key is read from the data, not from a spec file, so the report works on any
store. When `recipe` or `mode` varies, that is the variable (their own defaults follow from it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import stats
from .load import COMPLETED, Store, value_label, varying_keys
from .metrics import settling_epochs

# Metrics every ablation table carries (those present in the store); labels and directions come
# from tort_core.catalog. `best_*` (the best test epoch) is selection on the test set: not tested.
ABLATION_METRICS = ("final_test_top1", "valsel_test_top1", "final_knn_top1", "final_loss_distill",
                    "distill_settling_epoch")
SETTLING_FRACTION = 0.9
CURVE_METRICS = ("distill_settling_epoch", "distill_epochs", "distill_drop")  # per trial, from its curves
PRIMARY_KEYS = ("recipe", "mode")


def _items(label: str) -> list[str] | None:
    """Elements of a list label made by `value_label` ('[0.4, 0.6]' → ['0.4', '0.6'])."""
    if not (label.startswith("[") and label.endswith("]")):
        return None
    inner = label[1:-1].strip()
    return [x.strip() for x in inner.split(",")] if inner else []


def _float(x: str) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def sort_key(label: str) -> tuple:
    """Numbers by value, lists by length then elements (loss subsets: singles, pairs, all)."""
    items = _items(label)
    if items is not None:
        nums = [_float(x) for x in items]
        if all(n is not None for n in nums):
            return (1, len(items), tuple(nums), "")
        return (2, len(items), (), label)
    n = _float(label)
    return (0, 0, (n,), "") if n is not None else (3, 0, (), label)


def numeric_value(label: str) -> float:
    """A number to correlate against: the value itself, or a range's midpoint ([0.4, 0.6] → 0.5)."""
    items = _items(label)
    if items is not None:
        nums = [_float(x) for x in items]
        return float(np.mean(nums)) if nums and all(n is not None for n in nums) else math.nan
    n = _float(label)
    return n if n is not None else math.nan


@dataclass
class Ablation:
    sweep: str
    keys: list[str]
    default: str | None          # label of the reference variant (None: no reference)
    default_source: str          # "default" (the profile's value) or why another reference was used
    values: list[str]
    trials: pd.DataFrame         # all of the sweep's trials, with a `value` column
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return " × ".join(self.keys)

    @property
    def datasets(self) -> list[str]:
        return sorted(self.trials["dataset"].unique()) if "dataset" in self.trials else []

    def metrics(self) -> list[str]:
        return list(dict.fromkeys(self.table["metric"])) if not self.table.empty else []


def profile_default(key: str, row: pd.Series) -> str | None:
    """The key's value in the config the trial's recipe/profile/mode resolve to without overrides."""
    from .settings import default_config

    recipe = str(row.get("recipe", "tort"))
    profile = str(row.get("profile", "thesis")) if pd.notna(row.get("profile", None)) else "thesis"
    flat = default_config(recipe, profile, str(row.get("mode", "scratch")))
    return flat.get(key) if flat is not None else None


def _variant_labels(trials: pd.DataFrame, keys: list[str]) -> pd.Series:
    if len(keys) == 1:
        return trials[keys[0]].map(value_label)
    return trials[keys].apply(lambda r: ", ".join(f"{k}={value_label(r[k])}" for k in keys), axis=1)


def ablation_keys(trials: pd.DataFrame) -> list[str]:
    keys = varying_keys(trials)
    primary = [k for k in PRIMARY_KEYS if k in keys]
    return primary or keys


def sweep_keys(store: Store, sweep: str) -> list[str]:
    """The keys a sweep varies: its spec's axes when the store recorded them, else the config keys
    that differ between its trials."""
    keys = [k for k in store.sweep_axes(sweep) if k not in ("seed", "data.dataset")]
    if keys:
        primary = [k for k in PRIMARY_KEYS if k in keys]
        return primary or keys
    return ablation_keys(store.sweep_trials(sweep))


def is_comparison_sweep(store: Store, sweep: str) -> bool:
    return any(k in PRIMARY_KEYS for k in sweep_keys(store, sweep))


def find_ablations(store: Store, exclude_sweeps: set[str] | None = None) -> list[Ablation]:
    out = []
    for sweep in store.sweeps():
        if exclude_sweeps and sweep in exclude_sweeps:
            continue
        keys = sweep_keys(store, sweep)
        if not keys or any(k in PRIMARY_KEYS for k in keys):
            continue  # seeds only, or a recipe/mode comparison (handled by `compare`)
        t = store.sweep_trials(sweep)
        if t.empty or any(k not in t.columns for k in keys):
            continue
        ab = build_ablation(store, sweep, t, keys)
        pending = store.sweep_pending(sweep)
        if pending:
            ab.notes.append(f"{pending} planned trial(s) not started yet")
        out.append(ab)
    return out


def build_ablation(store: Store, sweep: str, trials: pd.DataFrame, keys: list[str],
                   level: float = stats.LEVEL, seed: int = 0) -> Ablation:
    t = trials.copy()
    t["value"] = _variant_labels(t, keys).to_numpy()
    values = sorted(t["value"].unique(), key=sort_key)
    notes: list[str] = []
    default, source = None, ""
    if len(keys) == 1:
        defaults = {profile_default(keys[0], r) for _, r in t.drop_duplicates(["recipe", "mode"]).iterrows()}
        defaults.discard(None)
        if len(defaults) == 1:
            default = defaults.pop()
            source = "default"
    if default is not None and default not in values:
        notes.append(f"the default {keys[0]} = {default} is not in this sweep; variants are compared "
                     f"with {values[0]} instead")
        default, source = values[0], "first value (default not swept)"
    elif default is None:
        default, source = values[0], "first value (no single default)"
    done = t[t["status"] == COMPLETED].copy()
    done = _add_curve_metrics(store, done)
    added = [c for c in CURVE_METRICS if c in done.columns]
    if added:
        t = t.drop(columns=[c for c in added if c in t.columns]).merge(done[["trial_id", *added]], on="trial_id",
                                                                       how="left")
    ab = Ablation(sweep=sweep, keys=keys, default=default, default_source=source, values=values, trials=t,
                  notes=notes)
    ab.table = _variant_table(done, values, default, level, seed)
    ab.failures = (t.groupby(["dataset", "value", "status"]).size().rename("trials").reset_index()
                   if not t.empty else pd.DataFrame())
    running = int((t["status"] != COMPLETED).sum() - (t["status"] == "failed").sum())
    if running:
        notes.append(f"{running} trial(s) not finished yet are left out")
    return ab


def _add_curve_metrics(store: Store, done: pd.DataFrame) -> pd.DataFrame:
    """The distillation loss's settling epoch per trial, and what the claims need to say why it is
    missing: how many epochs recorded the loss, and how far it fell from its first value."""
    if done.empty or store.epochs.empty or "loss_distill" not in store.epochs.columns:
        return done
    curves = store.curves(done["trial_id"])
    done["distill_settling_epoch"] = done["trial_id"].map(settling_epochs(curves, "loss_distill", SETTLING_FRACTION))
    v = pd.to_numeric(curves["loss_distill"], errors="coerce").replace([np.inf, -np.inf], np.nan)
    ok = curves.assign(_v=v).dropna(subset=["_v"]).sort_values(["trial_id", "epoch"], kind="stable")
    g = ok.groupby("trial_id")["_v"]
    done["distill_epochs"] = done["trial_id"].map(g.count()).fillna(0).astype(int)
    done["distill_drop"] = done["trial_id"].map(g.first() - g.min())
    return done


def _variant_table(done: pd.DataFrame, values: list[str], default: str, level: float, seed: int) -> pd.DataFrame:
    rows = []
    metrics = [m for m in ABLATION_METRICS if m in done.columns and done[m].notna().any()]
    for ds, g in done.groupby("dataset", sort=True):
        for m in metrics:
            ref = g.loc[g["value"] == default, m].to_numpy(dtype=float)
            block = []
            for v in values:
                x = g.loc[g["value"] == v, m].to_numpy(dtype=float)
                e = stats.mean_ci(x, level)
                row = {"dataset": ds, "metric": m, "value": v, "is_default": v == default, "n": e.n,
                       "mean": e.value, "lo": e.lo, "hi": e.hi, "why": e.why,
                       "sd": float(np.nanstd(x, ddof=1)) if e.n > 1 else math.nan}
                if v != default:
                    tg = stats.two_group(ref, x, level)
                    row.update({"diff": tg.diff.value, "diff_lo": tg.diff.lo, "diff_hi": tg.diff.hi,
                                "diff_why": tg.diff.why, "welch_p": tg.welch.p, "mw_p": tg.mann_whitney.p,
                                "mw_min_p": tg.mann_whitney.min_p, "hedges_g": tg.hedges_g, "mde80": tg.mde})
                block.append(row)
            tests = [r for r in block if not r["is_default"]]
            for col in ("welch_p", "mw_p"):
                adj, _ = stats.holm([r.get(col, math.nan) for r in tests])
                for r, a in zip(tests, adj):
                    r[f"{col}_holm"] = a
            rows.extend(block)
    cols = ["dataset", "metric", "value", "is_default", "n", "mean", "lo", "hi", "why", "sd", "diff", "diff_lo",
            "diff_hi", "diff_why", "welch_p", "welch_p_holm", "mw_p", "mw_min_p", "mw_p_holm", "hedges_g", "mde80"]
    return pd.DataFrame(rows, columns=cols)
