"""How many seeds? The smallest effect a comparison can detect, and the seeds an effect needs.

Both use the two-sided t-test's power (statsmodels TTestIndPower) at α = 0.05 and 80% power with
the seed-to-seed SD of the primary metric: observed in the store (pooled over both arms) or
given. `tort compare --plan` prints them before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import stats
from .compare import PRIMARY_METRIC, select_trials
from .load import COMPLETED, Store


def observed_sd(store: Store | None, baseline: str, method: str, datasets: Sequence[str], mode: str,
                profile: str | None = None, sweep: str | None = None,
                metric: str = PRIMARY_METRIC) -> dict[str, tuple[float, str]]:
    """dataset → (pooled seed-to-seed SD of `metric`, where it came from). The comparison's own
    sweep first, else any completed trials of the two recipes in this mode (and profile)."""
    out: dict[str, tuple[float, str]] = {}
    if store is None or store.empty:
        return out
    ids = None
    if sweep is not None and sweep in store.sweeps():
        ids = list(store.sweep_trials(sweep)["trial_id"].astype(str))
    for source, trial_ids in (("this comparison's trials", ids), ("other trials of these recipes", None)):
        if source.startswith("this") and trial_ids is None:
            continue
        t, _ = select_trials(store, baseline, method, datasets, mode, trial_ids)
        if profile is not None and "profile" in t:
            t = t[t["profile"] == profile]
        t = t[t["status"] == COMPLETED] if not t.empty else t
        for ds in datasets:
            if ds in out or t.empty or metric not in t:
                continue
            g = t[t["dataset"] == ds]
            a = g.loc[g["recipe"] == baseline, metric].to_numpy(dtype=float)
            b = g.loc[g["recipe"] == method, metric].to_numpy(dtype=float)
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            sd = stats.pooled_sd(a, b)
            if not math.isfinite(sd):  # one arm with ≥ 2 seeds is still an estimate
                arm = a if len(a) >= 2 else b if len(b) >= 2 else np.array([])
                sd = float(arm.std(ddof=1)) if len(arm) >= 2 else math.nan
            if math.isfinite(sd) and sd > 0:
                out[ds] = (sd, f"{source} ({len(a)} {baseline} + {len(b)} {method} seeds)")
    return out


def plan(sd_by_dataset: dict[str, tuple[float, str]], seeds: int, effect: float | None = None,
         alpha: float = stats.ALPHA, power: float = stats.POWER) -> pd.DataFrame:
    """One row per dataset: the SD used, the smallest Δ detectable with `seeds` per arm, and
    (with `effect`) the seeds per arm that Δ = effect needs."""
    rows = []
    for ds, (sd, source) in sd_by_dataset.items():
        row = {"dataset": ds, "sd": sd, "sd_source": source, "seeds": seeds,
               "mde": stats.min_detectable_effect(sd, seeds, seeds, alpha, power)}
        if effect is not None:
            row["effect"] = effect
            row["seeds_needed"] = stats.seeds_needed(effect, sd, alpha, power)
        rows.append(row)
    return pd.DataFrame(rows)
