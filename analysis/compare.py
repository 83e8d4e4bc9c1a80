"""Method vs baseline, per dataset and across datasets: the thesis's results table, with statistics.

    cmp = compare(store, baseline="sota", method="tort")
    cmp.table        # one row per (mode, dataset, metric): means, Δ with its Welch interval, tests
    cmp.runs         # one row per (mode, dataset, recipe): runs started, completed, failed, collapsed
    cmp.recipes      # one row per (mode, dataset, recipe): seeds, means, time
    cmp.convergence  # one row per (mode, dataset): epochs to the target, speed-up with its interval
    cmp.time         # one row per (mode, dataset): time ratios (same hardware only)
    cmp.across       # one row per (mode, metric): IQM of normalised scores, P(method > baseline), Wilcoxon

The primary test of every comparison is Welch's t on the final test top-1 (`PRIMARY_METRIC`),
Holm-corrected over the datasets of a mode; every other number is secondary and labelled so.
`final_*` is the last epoch's value; `best_*` (max over test epochs) is selection on the test set
and is not tested; with a validation split, `valsel_*` (test at the best-validation epoch) is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tort_core.catalog import RECIPE_INFO, metric_info, metric_label

from . import across, stats
from .errors import AnalysisError
from .health import run_counts, score_failed_as_chance, teacher_collapse
from .load import COMPLETED, Store, arm_ids, value_label
from .metrics import convergence, time_per_trial, time_ratio
from .reference import chance_for, chance_text, normalise
from .settings import describe
from .stats import fmt_estimate

PRIMARY_METRIC = "final_test_top1"
METRICS = ("final_test_top1", "final_knn_top1", "valsel_test_top1")  # those present are used
CONVERGENCE_FRACTION = 0.9
# A convergence target must lie at least this fraction of the way from chance to 100%, or
# "epochs to reach it" measures nothing (a baseline at chance sets a target anyone reaches).
MIN_TARGET_ABOVE_CHANCE = 0.10
# The hw.* fields that make two timings comparable (not per-attempt bookkeeping such as the pid).
HARDWARE_KEYS = ("hw.host", "hw.device", "hw.gpu_name", "hw.cpus", "hw.gpus", "hw.torch_threads", "hw.cpu_count")


@dataclass
class Comparison:
    baseline: str
    method: str
    table: pd.DataFrame
    runs: pd.DataFrame
    recipes: pd.DataFrame
    convergence: pd.DataFrame
    time: pd.DataFrame
    across: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    trial_ids: list[str] = field(default_factory=list)
    settings: list[tuple[str, str]] = field(default_factory=list)
    failed_as_chance: bool = False

    @property
    def empty(self) -> bool:
        return self.table.empty

    def groups(self) -> list[tuple[str, str]]:
        if self.runs.empty:
            return []
        return list(dict.fromkeys(zip(self.runs["mode"], self.runs["dataset"])))


def check_recipes(store: Store, names: Iterable[str]) -> None:
    """A recipe must be known to tort (the catalog) or present in the store (a plug-in's)."""
    present = set(store.trials["recipe"].dropna().astype(str)) if "recipe" in store.trials.columns else set()
    for name in names:
        if name not in RECIPE_INFO and name not in present:
            known = sorted(set(RECIPE_INFO) | present)
            raise AnalysisError(f"unknown recipe '{name}'; known: {', '.join(known)}")


def select_trials(store: Store, baseline: str, method: str, datasets: Sequence[str] | None = None,
                  mode: str | None = None, trial_ids: Iterable[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The trials (any status) of the two recipes; when no explicit trial ids are given and a
    (mode, dataset, recipe) holds several arms (e.g. ablation variants), keep one and say so."""
    check_recipes(store, (baseline, method))
    t = store.trials
    notes: list[str] = []
    if t.empty:
        return t, ["the store holds no trials"]
    t = t[t["recipe"].isin([baseline, method])]
    if mode is not None:
        t = t[t["mode"] == mode]
    if datasets:
        known = set(store.trials["dataset"]) if "dataset" in store.trials else set()
        unknown = [d for d in datasets if d not in known]
        if unknown and trial_ids is None:
            notes.append(f"no trials at all for dataset(s): {', '.join(unknown)}")
        t = t[t["dataset"].isin(list(datasets))]
    if trial_ids is not None:
        t = t[t["trial_id"].isin(list(trial_ids))]
    if trial_ids is None and not t.empty:
        t = _one_arm_each(t, notes)
    return t.copy(), notes


def _one_arm_each(t: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    t = t.assign(_arm=arm_ids(t))
    keep = []
    for (mode, ds, recipe), g in t.groupby(["mode", "dataset", "recipe"], sort=True):
        arms = g[g["status"] == COMPLETED].groupby("_arm").size()
        if g["_arm"].nunique() == 1:
            keep.append(g)
            continue
        # Prefer the arm that `tort compare` ran, else the one with most completed seeds.
        if "sweep" in g.columns:
            cmp_arms = g[g["sweep"].astype(str).str.startswith("compare")]["_arm"].unique()
            if len(cmp_arms) == 1:
                keep.append(g[g["_arm"] == cmp_arms[0]])
                notes.append(f"{mode}/{ds}/{recipe}: {g['_arm'].nunique()} configurations; used the compare sweep's")
                continue
        counts = arms if len(arms) else g.groupby("_arm").size()
        chosen = counts.sort_values(ascending=False, kind="stable").index[0]
        keep.append(g[g["_arm"] == chosen])
        notes.append(f"{mode}/{ds}/{recipe}: {g['_arm'].nunique()} configurations in the store; used the one with "
                     f"the most seeds ({counts[chosen]}); pass trial ids to choose")
    return pd.concat(keep).drop(columns="_arm") if keep else t.drop(columns="_arm")


def _accuracy_metrics(metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if metric_info(m).kind == "accuracy"]


def compare(store: Store, baseline: str = "sota", method: str = "tort", datasets: Sequence[str] | None = None,
            mode: str | None = None, trial_ids: Iterable[str] | None = None, metrics: Sequence[str] | None = None,
            frac: float = CONVERGENCE_FRACTION, level: float = stats.LEVEL, seed: int = 0,
            failed_as_chance: bool = False) -> Comparison:
    """failed_as_chance: score each failed run at chance on the accuracy metrics instead of
    leaving it out (the numbers then describe every run started, not the survivors)."""
    if baseline == method:
        raise AnalysisError(f"baseline and method are the same recipe '{method}'")
    trials, notes = select_trials(store, baseline, method, datasets, mode, trial_ids)
    if metrics is None:
        metrics = [m for m in METRICS if m in trials.columns and trials[m].notna().any()] or [PRIMARY_METRIC]
    metrics = list(metrics)
    not_done = trials[~trials["status"].isin([COMPLETED, "failed"])] if not trials.empty else trials
    if len(not_done):
        by = not_done.groupby("status").size().to_dict()
        notes.append("left out, not finished: " + ", ".join(f"{n} {s}" for s, n in by.items()))
    collapsed = teacher_collapse(trials, store.epochs) if not trials.empty else pd.DataFrame()
    rows, run_rows, recipe_rows, conv_rows, time_rows = [], [], [], [], []
    groups = sorted({(m, d) for m, d in zip(trials["mode"], trials["dataset"])}) if not trials.empty else []
    if datasets:  # requested datasets with no trials still get a row that says so
        modes = sorted(set(trials["mode"])) if not trials.empty else [mode or "scratch"]
        groups = sorted(set(groups) | {(m, d) for m in modes for d in datasets})
    used: dict[tuple[str, str, str], pd.DataFrame] = {}
    for mode_, ds in groups:
        g = trials[(trials["mode"] == mode_) & (trials["dataset"] == ds)] if not trials.empty else trials
        chance = chance_for(ds, store.trials)
        arms = {}
        for recipe in (baseline, method):
            x = g[g["recipe"] == recipe] if not g.empty else g
            counts = run_counts(x, collapsed)
            scored = 0
            if failed_as_chance and not x.empty:
                done, scored = score_failed_as_chance(x, _accuracy_metrics(metrics), chance)
                if counts["failed"] and not math.isfinite(chance):
                    notes.append(f"{mode_}/{ds}/{recipe}: chance unknown, so its {counts['failed']} failed run(s) "
                                 f"could not be scored as chance and are left out")
            else:
                done = x[x["status"] == COMPLETED] if not x.empty else x
            arms[recipe] = done
            used[(mode_, ds, recipe)] = done
            run_rows.append({"mode": mode_, "dataset": ds, "recipe": recipe, **counts, "scored_as_chance": scored,
                             "epochs": _epochs_label(x)})
        a, b = arms[baseline], arms[method]
        if a.empty or b.empty:
            lacking = [r for r, x in ((baseline, a), (method, b)) if x.empty]
            notes.append(f"{mode_}/{ds}: no completed {' or '.join(lacking)} trials, nothing to compare")
        for m in metrics:
            va = a[m].to_numpy(dtype=float) if m in a else np.array([])
            vb = b[m].to_numpy(dtype=float) if m in b else np.array([])
            tg = stats.two_group(va, vb, level)
            is_acc = metric_info(m).kind == "accuracy"
            rows.append({"mode": mode_, "dataset": ds, "metric": m,
                         "role": "primary" if m == PRIMARY_METRIC else "secondary",
                         "chance": chance if is_acc else math.nan,
                         "baseline_includes_chance": bool(is_acc and tg.baseline.has_interval
                                                          and tg.baseline.covers(chance)),
                         **tg.as_row(), "notes": "; ".join(tg.notes)})
        curves = {r: store.curves(x["trial_id"]) for r, x in ((baseline, a), (method, b)) if not x.empty}
        conv_rows.append({"mode": mode_, "dataset": ds, **_convergence_row(curves, baseline, method, frac, chance,
                                                                          level)})
        times = {r: time_per_trial(c) for r, c in curves.items()}
        for recipe, x in ((baseline, a), (method, b)):
            seeds = sorted(pd.to_numeric(x["seed"], errors="coerce").dropna()) if "seed" in x else []
            row = {"mode": mode_, "dataset": ds, "recipe": recipe, "seeds": int(len(x)),
                   "seed_list": ",".join(str(int(s)) for s in seeds)}
            for m in metrics:
                e = stats.mean_ci(x[m] if m in x else [], level)
                row.update({f"{m}_mean": e.value, f"{m}_lo": e.lo, f"{m}_hi": e.hi})
            tt = times.get(recipe)
            for col in ("seconds_per_epoch", "samples_per_s", "total_seconds"):
                e = stats.mean_ci(tt[col] if tt is not None and col in tt else [], level)
                row.update({f"{col}_mean": e.value, f"{col}_lo": e.lo, f"{col}_hi": e.hi})
            recipe_rows.append(row)
        time_rows.append({"mode": mode_, "dataset": ds, **_time_row(a, b, times, baseline, method, level)})
    table = pd.DataFrame(rows)
    if not table.empty:
        table = _holm_by(table, ["mode", "metric"], [("welch_p", "welch_p_holm"), ("mw_p", "mw_p_holm")])
    used_trials = pd.concat(list(used.values())) if used else trials.iloc[:0]
    across_df = across_datasets(used_trials, baseline, method, metrics, level, seed, store.trials) \
        if not used_trials.empty else pd.DataFrame()
    return Comparison(baseline, method, table, pd.DataFrame(run_rows), pd.DataFrame(recipe_rows),
                      pd.DataFrame(conv_rows), pd.DataFrame(time_rows), across_df, notes,
                      trial_ids=sorted(trials["trial_id"].astype(str)) if not trials.empty else [],
                      settings=describe(trials), failed_as_chance=failed_as_chance)


def _epochs_label(x: pd.DataFrame) -> str:
    col = "total_epochs" if "total_epochs" in x and x["total_epochs"].notna().any() else "epochs"
    if x.empty or col not in x:
        return ""
    return "|".join(sorted({value_label(v) for v in x[col].dropna()}))


def _holm_by(df: pd.DataFrame, by: list[str], pairs: list[tuple[str, str]]) -> pd.DataFrame:
    df = df.copy()
    for src, dst in pairs:
        df[dst] = math.nan
        for _, idx in df.groupby(by, sort=False).groups.items():
            adj, _ = stats.holm(df.loc[idx, src].to_numpy(dtype=float))
            df.loc[idx, dst] = adj
    return df


def _convergence_row(curves: dict[str, pd.DataFrame], baseline: str, method: str, frac: float, chance: float,
                     level: float) -> dict:
    """Epochs each recipe needs to reach frac × the baseline's best seed-mean test top-1, and the
    speed-up (baseline epochs ÷ method epochs, ratio of geometric means over seeds, Welch
    interval on the log scale); n/a with the reason when it is not meaningful."""
    row = {"target": math.nan, "chance": chance, "speedup": math.nan, "speedup_lo": math.nan,
           "speedup_hi": math.nan, "speedup_why": ""}
    conv = convergence(curves, baseline, "test_top1", frac) if baseline in curves else pd.DataFrame()
    if conv.empty:
        row["speedup_why"] = f"no learning {baseline} curve sets a target"
        return row
    c = conv.set_index("recipe")
    target = float(conv["target"].iloc[0])
    row["target"] = target
    for r in (baseline, method):
        if r in c.index:
            row.update({f"{r}_epochs_mean_curve": c.loc[r, "epochs_mean_curve"],
                        f"{r}_seeds_reached": int(c.loc[r, "seeds_reached"]), f"{r}_seeds": int(c.loc[r, "seeds"])})
    if not math.isfinite(chance):
        row["speedup_why"] = "chance unknown: cannot tell whether the target is above it"
    elif (target - chance) / (100.0 - chance) < MIN_TARGET_ABOVE_CHANCE:
        row["speedup_why"] = f"target {target:.1f}% too close to chance ({chance:.1f}%)"
    elif method not in c.index:
        row["speedup_why"] = f"no {method} curve"
    else:
        missing = [f"{c.loc[r, 'seeds'] - c.loc[r, 'seeds_reached']} of {c.loc[r, 'seeds']} {r} seeds"
                   for r in (baseline, method) if c.loc[r, "seeds_reached"] < c.loc[r, "seeds"]]
        if missing:
            row["speedup_why"] = f"{' and '.join(missing)} never reached the target"
        else:
            firsts = {r: c.loc[r, "firsts"] for r in (baseline, method)}
            e = stats.log_ratio_ci(firsts[baseline], firsts[method], level)
            row.update({"speedup": e.value, "speedup_lo": e.lo, "speedup_hi": e.hi, "speedup_why": e.why})
    return row


def hardware_check(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """'' when every run of both arms recorded the same hardware, else why timings do not compare."""
    keys = [k for k in HARDWARE_KEYS if k in a.columns or k in b.columns]
    if not keys:
        return "hardware not recorded (no hw.* columns)"
    both = pd.concat([a.reindex(columns=keys), b.reindex(columns=keys)])
    differ = []
    for k in keys:
        values = sorted({value_label(v) for v in both[k]})
        if len(values) > 1:
            differ.append(f"{k}: {', '.join(values[:4])}{' …' if len(values) > 4 else ''}")
    return ("runs on different hardware (" + "; ".join(differ) + ")") if differ else ""


def _time_row(a: pd.DataFrame, b: pd.DataFrame, times: dict[str, pd.DataFrame], baseline: str, method: str,
              level: float) -> dict:
    """`metrics.time_ratio` (> 1: the method is faster), only between runs on the same hardware."""
    why = hardware_check(a, b) if not (a.empty or b.empty) else "an arm has no completed runs"
    ratios = time_ratio(times[baseline], times[method], level) if not why and len(times) == 2 else {}
    row: dict[str, float | str] = {"time_why": why}
    for col in ("seconds_per_epoch", "total_seconds", "samples_per_s"):
        e = ratios.get(col, stats.Estimate(math.nan, why=why or "not recorded"))
        row.update({f"{col}_speedup": e.value, f"{col}_speedup_lo": e.lo, f"{col}_speedup_hi": e.hi,
                    f"{col}_speedup_why": e.why})
    return row


def across_datasets(trials: pd.DataFrame, baseline: str, method: str, metrics: Sequence[str],
                    level: float = stats.LEVEL, seed: int = 0, all_trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (mode, metric): Wilcoxon signed-rank on per-dataset mean differences (secondary); the
    IQM of each arm's chance-normalised scores and their difference (stratified bootstrap over both
    arms); the mean probability of improvement with its interval."""
    rows = []
    for mode_, tm in trials.groupby("mode", sort=True):
        for m in metrics:
            if m not in tm.columns:
                continue
            diffs, nb, nm, rb, rm, used, unknown = [], {}, {}, {}, {}, [], []
            for ds, g in tm.groupby("dataset", sort=True):
                a = g.loc[g["recipe"] == baseline, m].to_numpy(dtype=float)
                b = g.loc[g["recipe"] == method, m].to_numpy(dtype=float)
                a, b = a[np.isfinite(a)], b[np.isfinite(b)]
                if len(a) == 0 or len(b) == 0:
                    continue
                used.append(ds)
                diffs.append(b.mean() - a.mean())
                rb[ds], rm[ds] = a, b
                chance = chance_for(ds, all_trials)
                if not math.isfinite(chance):
                    unknown.append(ds)
                else:
                    nb[ds], nm[ds] = normalise(a, chance), normalise(b, chance)
            w = stats.wilcoxon_signed_rank(diffs)
            is_acc = metric_info(m).kind == "accuracy"
            none = stats.Estimate(math.nan, why="not an accuracy")
            ib, im, idiff = across.iqm_by_arm(nb, nm, level, seed=seed) if is_acc and nb else (none, none, none)
            pi = across.mean_prob_improvement(rb, rm, level, seed=seed)
            notes = [w.note] if w.note else []
            if unknown and is_acc:
                notes.append(f"chance unknown, left out of the IQM: {', '.join(unknown)}")
            rows.append({"mode": mode_, "metric": m, "datasets": len(used), "dataset_list": ",".join(used),
                         "mean_diff": float(np.mean(diffs)) if diffs else math.nan,
                         "wilcoxon_stat": w.statistic, "wilcoxon_p": w.p, "wilcoxon_min_p": w.min_p,
                         **_est("iqm_baseline", ib), **_est("iqm_method", im), **_est("iqm_diff", idiff),
                         **_est("p_improvement", pi), "notes": "; ".join(notes)})
    df = pd.DataFrame(rows)
    if not df.empty:
        df = _holm_by(df, ["mode"], [("wilcoxon_p", "wilcoxon_p_holm")])
    return df


def _est(prefix: str, e: stats.Estimate) -> dict:
    return {prefix: e.value, f"{prefix}_lo": e.lo, f"{prefix}_hi": e.hi, f"{prefix}_why": e.why}


# ---------------------------------------------------------------------------------------------
# Rendering: strings for people (console, Markdown), numbers for machines (CSV)

def fmt_num(x: float, digits: int = 2) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_p(p: float) -> str:
    try:
        p = float(p)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(p):
        return "n/a"
    if p == 0:
        return "< 1e-300"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 2, why: str = "") -> str:
    return fmt_estimate(mean, lo, hi, why if isinstance(why, str) else "", digits)


@dataclass
class DisplayTable:
    title: str
    df: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def __iter__(self):  # (title, df) unpacking, as before
        return iter((self.title, self.df))


def _epochs_cell(conv: dict, recipe: str) -> str:
    """'epoch 7 (3/3 seeds)' from a convergence row: the seed-mean curve's epoch and the seeds that
    reach the target on their own."""
    seeds = conv.get(f"{recipe}_seeds", math.nan)
    if not isinstance(seeds, (int, float)) or not math.isfinite(seeds):
        return "n/a"
    e = conv.get(f"{recipe}_epochs_mean_curve", math.nan)
    reached = f"{int(conv[f'{recipe}_seeds_reached'])}/{int(seeds)} seeds"
    return f"epoch {int(e)} ({reached})" if math.isfinite(e) else f"never ({reached})"


def _metric_cell(r: dict, role: str) -> str:
    label = metric_label(r["metric"])
    return f"{label} — primary ({stats.PRIMARY_TEST})" if role == "primary" else f"{label} — secondary"


def runs_table(cmp: Comparison) -> DisplayTable:
    rows = []
    for r in cmp.runs.to_dict("records"):
        collapsed = "n/a" if not math.isfinite(r["collapsed"]) else f"{int(r['collapsed'])} of {r['entropy_recorded']}"
        rows.append({"dataset": r["dataset"], "mode": r["mode"], "recipe": r["recipe"], "started": r["started"],
                     "completed": r["completed"], "failed": r["failed"],
                     "failure rate": f"{100 * r['failure_rate']:.0f}%" if math.isfinite(r["failure_rate"]) else "n/a",
                     "not finished": r["running"], "teacher collapsed": collapsed, "epochs": r["epochs"]})
    notes = []
    if cmp.failed_as_chance:
        put = int(cmp.runs["scored_as_chance"].sum()) if not cmp.runs.empty else 0
        notes.append(f"failed runs scored as chance (--failed-as-chance): {put} run(s) put back")
    elif not cmp.runs.empty and cmp.runs["failed"].sum():
        notes.append("failed runs are left out of the statistics below (survivors only); "
                     "--failed-as-chance scores them at chance instead")
    return DisplayTable("runs per arm", pd.DataFrame(rows), notes)


def display_tables(cmp: Comparison) -> list[DisplayTable]:
    """Human-readable tables: the runs per arm, one per (mode, dataset), one across datasets."""
    out: list[DisplayTable] = [runs_table(cmp)] if not cmp.runs.empty else []
    b, m = cmp.baseline, cmp.method
    for mode_, ds in cmp.groups():
        t = cmp.table[(cmp.table["mode"] == mode_) & (cmp.table["dataset"] == ds)] if not cmp.table.empty else cmp.table
        rec = cmp.recipes[(cmp.recipes["mode"] == mode_) & (cmp.recipes["dataset"] == ds)].set_index("recipe")
        n_b = int(rec.loc[b, "seeds"]) if b in rec.index else 0
        n_m = int(rec.loc[m, "seeds"]) if m in rec.index else 0
        cb, cm = f"{b} (n={n_b})", f"{m} (n={n_m})"
        rows, notes = [], []
        chance = math.nan
        for r in t.to_dict("records"):
            role = r["role"]
            chance = r["chance"] if math.isfinite(r["chance"]) else chance
            rows.append({"metric": _metric_cell(r, role),
                         cb: fmt_ci(r["baseline_mean"], r["baseline_lo"], r["baseline_hi"], why=r["baseline_why"]),
                         cm: fmt_ci(r["method_mean"], r["method_lo"], r["method_hi"], why=r["method_why"]),
                         "Δ [95% Welch CI]": fmt_ci(r["diff_mean"], r["diff_lo"], r["diff_hi"], why=r["diff_why"]),
                         "Welch p (Holm)": f"{fmt_p(r['welch_p'])} ({fmt_p(r['welch_p_holm'])})",
                         "MW p (floor; Holm)": f"{fmt_p(r['mw_p'])} (floor {fmt_p(r['mw_min_p'])}; "
                                               f"Holm {fmt_p(r['mw_p_holm'])})",
                         "Hedges g": fmt_num(r["hedges_g"]), f"P({m}>{b})": fmt_num(r["p_improvement"]),
                         "smallest Δ detectable (80% power)": fmt_num(r["mde80"])})
            if r["baseline_includes_chance"]:
                notes.append(f"⚠ {b}'s {metric_label(r['metric'])} interval [{fmt_num(r['baseline_lo'])}, "
                             f"{fmt_num(r['baseline_hi'])}] includes chance ({chance_text(r['chance'])}): the "
                             f"baseline may not have learnt, so a gain over it says little")
        conv = cmp.convergence
        conv = conv[(conv["mode"] == mode_) & (conv["dataset"] == ds)] if not conv.empty else conv
        if not conv.empty and math.isfinite(conv["target"].iloc[0]):
            c = conv.iloc[0].to_dict()

            rows.append({"metric": f"epochs to {c['target']:.1f}% ({CONVERGENCE_FRACTION:.0%} of {b}'s best) "
                                   f"— secondary", cb: _epochs_cell(c, b), cm: _epochs_cell(c, m),
                         "Δ [95% Welch CI]": (fmt_ci(c["speedup"], c["speedup_lo"], c["speedup_hi"],
                                                     why=c["speedup_why"]) + f"× faster convergence ({m})"
                                              if math.isfinite(c["speedup"]) else f"speed-up n/a: {c['speedup_why']}")})
        tm = cmp.time
        tm = tm[(tm["mode"] == mode_) & (tm["dataset"] == ds)] if not tm.empty else tm
        for col, label, unit in (("seconds_per_epoch", "seconds / epoch", "× speed per epoch"),
                                 ("samples_per_s", "samples / s", "× throughput"),
                                 ("total_seconds", "total seconds", "× speed of the whole run")):
            if f"{col}_mean" not in rec.columns:
                continue
            cell = {r: (fmt_ci(rec.loc[r, f"{col}_mean"], rec.loc[r, f"{col}_lo"], rec.loc[r, f"{col}_hi"], 1)
                        if r in rec.index else "n/a") for r in (b, m)}
            ratio = "n/a"
            if not tm.empty and f"{col}_speedup" in tm.columns:
                x = tm.iloc[0]
                ratio = (f"{fmt_ci(x[f'{col}_speedup'], x[f'{col}_speedup_lo'], x[f'{col}_speedup_hi'])}{unit} ({m}, "
                         f">1 faster)" if math.isfinite(x[f"{col}_speedup"]) else f"n/a: {x[f'{col}_speedup_why']}")
            rows.append({"metric": f"{label} — secondary", cb: cell[b], cm: cell[m], "Δ [95% Welch CI]": ratio})
        if not math.isfinite(chance) and not conv.empty:
            chance = float(conv["chance"].iloc[0])
        title = f"{ds} — {mode_} (chance {chance_text(chance)})"
        out.append(DisplayTable(title, pd.DataFrame(rows).fillna(""), notes))
    if not cmp.across.empty:
        rows = []
        for r in cmp.across.to_dict("records"):
            rows.append({"mode": r["mode"], "metric": metric_label(r["metric"]), "datasets": int(r["datasets"]),
                         f"IQM {b}": fmt_ci(r["iqm_baseline"], r["iqm_baseline_lo"], r["iqm_baseline_hi"],
                                            why=r["iqm_baseline_why"]),
                         f"IQM {m}": fmt_ci(r["iqm_method"], r["iqm_method_lo"], r["iqm_method_hi"],
                                            why=r["iqm_method_why"]),
                         "IQM Δ": fmt_ci(r["iqm_diff"], r["iqm_diff_lo"], r["iqm_diff_hi"], why=r["iqm_diff_why"]),
                         f"mean P({m}>{b})": fmt_ci(r["p_improvement"], r["p_improvement_lo"], r["p_improvement_hi"],
                                                   why=r["p_improvement_why"]),
                         "mean Δ": fmt_num(r["mean_diff"]),
                         "Wilcoxon p (floor; Holm)": f"{fmt_p(r['wilcoxon_p'])} (floor {fmt_p(r['wilcoxon_min_p'])}; "
                                                     f"Holm {fmt_p(r['wilcoxon_p_holm'])})",
                         "notes": r["notes"]})
        notes = ["IQM: interquartile mean of scores normalised by fixed references, chance → 0 and 100% top-1 → 1; "
                 "intervals: stratified bootstrap over both arms (expanded percentile); all secondary"]
        out.append(DisplayTable("across datasets", pd.DataFrame(rows), notes))
    return out


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    if df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]

    def cell(v: object) -> str:
        if isinstance(v, float):
            v = fmt_num(v, 4)
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def settings_text(cmp: Comparison) -> str:
    return " · ".join(f"{k}: {v}" for k, v in cmp.settings)


def comparison_markdown(cmp: Comparison) -> str:
    parts = [f"# {cmp.method} vs {cmp.baseline}\n",
             f"Settings: {settings_text(cmp)}\n" if cmp.settings else "",
             f"Primary test: {stats.PRIMARY_TEST} on {metric_label(PRIMARY_METRIC)} per dataset, Holm-corrected over "
             f"the datasets of a mode; every other number is secondary. Intervals are 95%.\n"]
    for t in display_tables(cmp):
        parts.append(f"## {t.title}\n\n{to_markdown(t.df)}" + "".join(f"\n- {n}" for n in t.notes)
                     + ("\n" if t.notes else ""))
    if cmp.notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in cmp.notes) + "\n")
    return "\n".join(p for p in parts if p)


def write_comparison(cmp: Comparison, out_dir: str | Path, stem: str = "compare") -> list[Path]:
    """CSV (numbers) and Markdown (the printed tables) files; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in (("table", cmp.table), ("runs", cmp.runs), ("recipes", cmp.recipes),
                     ("convergence", cmp.convergence), ("time", cmp.time), ("across", cmp.across)):
        p = out / f"{stem}_{name}.csv"
        df.to_csv(p, index=False)
        written.append(p)
    p = out / f"{stem}.md"
    p.write_text(comparison_markdown(cmp))
    written.append(p)
    return written
