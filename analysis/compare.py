"""Method vs baseline, per dataset and across datasets: the thesis's results table, with statistics.

    cmp = compare(store, baseline="sota", method="tort")
    cmp.table        # one row per (mode, dataset, metric): means, CIs, difference, tests, effect sizes
    cmp.recipes      # one row per (mode, dataset, recipe): seeds, means, time, convergence
    cmp.across       # one row per (mode, metric): Wilcoxon over datasets, IQM of normalised scores

Families for the Holm correction: a test (Welch or Mann–Whitney) of one metric over the datasets
of one mode is one family (the claim "the method wins on each dataset"); the across-dataset
Wilcoxon tests of the metrics of one mode are another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .errors import AnalysisError
from .load import COMPLETED, Store, arm_ids
from .metrics import convergence, time_per_trial, time_ratio

METRICS = ("final_test_top1", "best_test_top1", "final_knn_top1", "best_knn_top1")
METRIC_LABELS = {"final_test_top1": "final top-1", "best_test_top1": "best top-1",
                 "final_knn_top1": "final k-NN top-1", "best_knn_top1": "best k-NN top-1"}
CONVERGENCE_FRACTION = 0.9


@dataclass
class Comparison:
    baseline: str
    method: str
    table: pd.DataFrame
    recipes: pd.DataFrame
    convergence: pd.DataFrame
    time: pd.DataFrame
    across: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    trial_ids: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.table.empty

    def groups(self) -> list[tuple[str, str]]:
        if self.recipes.empty:
            return []
        return list(dict.fromkeys(zip(self.recipes["mode"], self.recipes["dataset"])))


def check_recipes(store: Store, names: Iterable[str]) -> None:
    from tort_core.recipes import RECIPES

    present = set(store.trials["recipe"].dropna().astype(str)) if "recipe" in store.trials.columns else set()
    for name in names:
        if name not in RECIPES and name not in present:
            known = sorted(set(RECIPES.names()) | present)
            raise AnalysisError(f"unknown recipe '{name}'; known: {', '.join(known)}")


def select_trials(store: Store, baseline: str, method: str, datasets: Sequence[str] | None = None,
                  mode: str | None = None, trial_ids: Iterable[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The completed trials of the two recipes; when no explicit trial ids are given and a
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
    not_done = t[t["status"] != COMPLETED]
    if len(not_done):
        by = not_done.groupby("status").size().to_dict()
        notes.append("left out, not completed: " + ", ".join(f"{n} {s}" for s, n in by.items()))
    t = t[t["status"] == COMPLETED].copy()
    if trial_ids is None and not t.empty:
        t = _one_arm_each(t, notes)
    return t, notes


def _one_arm_each(t: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    t = t.assign(_arm=arm_ids(t))
    keep = []
    for (mode, ds, recipe), g in t.groupby(["mode", "dataset", "recipe"], sort=True):
        arms = g.groupby("_arm").size()
        if len(arms) == 1:
            keep.append(g)
            continue
        # Prefer the arm that `tort compare` ran, else the one with most seeds.
        if "sweep" in g.columns:
            cmp_arms = g[g["sweep"].astype(str).str.startswith("compare")]["_arm"].unique()
            if len(cmp_arms) == 1:
                keep.append(g[g["_arm"] == cmp_arms[0]])
                notes.append(f"{mode}/{ds}/{recipe}: {len(arms)} configurations; used the compare sweep's")
                continue
        chosen = arms.sort_values(ascending=False).index[0]
        keep.append(g[g["_arm"] == chosen])
        notes.append(f"{mode}/{ds}/{recipe}: {len(arms)} configurations in the store; used the one with the "
                     f"most seeds ({arms[chosen]}); pass trial ids to choose")
    return pd.concat(keep).drop(columns="_arm") if keep else t.drop(columns="_arm")


def compare(store: Store, baseline: str = "sota", method: str = "tort", datasets: Sequence[str] | None = None,
            mode: str | None = None, trial_ids: Iterable[str] | None = None, metrics: Sequence[str] = METRICS,
            frac: float = CONVERGENCE_FRACTION, level: float = stats.LEVEL, seed: int = 0) -> Comparison:
    if baseline == method:
        raise AnalysisError(f"baseline and method are the same recipe '{method}'")
    trials, notes = select_trials(store, baseline, method, datasets, mode, trial_ids)
    rows, recipe_rows, conv_rows, time_rows = [], [], [], []
    groups = sorted({(m, d) for m, d in zip(trials["mode"], trials["dataset"])}) if not trials.empty else []
    if datasets:  # requested datasets with no completed trials still get a row that says so
        modes = sorted(set(trials["mode"])) if not trials.empty else [mode or "scratch"]
        groups = sorted(set(groups) | {(m, d) for m in modes for d in datasets})
    for mode_, ds in groups:
        g = trials[(trials["mode"] == mode_) & (trials["dataset"] == ds)]
        a, b = g[g["recipe"] == baseline], g[g["recipe"] == method]
        if a.empty or b.empty:
            lacking = [r for r, x in ((baseline, a), (method, b)) if x.empty]
            notes.append(f"{mode_}/{ds}: no completed {' or '.join(lacking)} trials, nothing to compare")
        for m in metrics:
            va = a[m].to_numpy(dtype=float) if m in a else np.array([])
            vb = b[m].to_numpy(dtype=float) if m in b else np.array([])
            tg = stats.two_group(va, vb, level, seed=seed)
            rows.append({"mode": mode_, "dataset": ds, "metric": m, **tg.as_row(), "notes": "; ".join(tg.notes)})
        curves = {r: store.curves(x["trial_id"]) for r, x in ((baseline, a), (method, b)) if not x.empty}
        conv = convergence(curves, baseline, "test_top1", frac)
        for r in conv.to_dict("records"):
            conv_rows.append({"mode": mode_, "dataset": ds, **r})
        times = {r: time_per_trial(c) for r, c in curves.items()}
        for recipe, x in ((baseline, a), (method, b)):
            row = {"mode": mode_, "dataset": ds, "recipe": recipe, "seeds": int(len(x)),
                   "seed_list": ",".join(str(int(s)) for s in sorted(pd.to_numeric(x["seed"], errors="coerce").dropna()))
                   if "seed" in x else ""}
            for m in metrics:
                e = stats.mean_ci(x[m] if m in x else [], level)
                row.update({f"{m}_mean": e.value, f"{m}_lo": e.lo, f"{m}_hi": e.hi})
            tt = times.get(recipe)
            for col in ("seconds_per_epoch", "samples_per_s", "total_seconds"):
                e = stats.mean_ci(tt[col] if tt is not None and col in tt else [], level)
                row.update({f"{col}_mean": e.value, f"{col}_lo": e.lo, f"{col}_hi": e.hi})
            recipe_rows.append(row)
        if baseline in times and method in times:
            ratios = time_ratio(times[baseline], times[method])
            time_rows.append({"mode": mode_, "dataset": ds,
                              **{f"{k}_speedup": e.value for k, e in ratios.items()},
                              **{f"{k}_speedup_lo": e.lo for k, e in ratios.items()},
                              **{f"{k}_speedup_hi": e.hi for k, e in ratios.items()}})
    table = pd.DataFrame(rows)
    if not table.empty:
        table = _holm_by(table, ["mode", "metric"], [("welch_p", "welch_p_holm"), ("mw_p", "mw_p_holm")])
    recipes = pd.DataFrame(recipe_rows)
    conv_df = pd.DataFrame(conv_rows)
    time_df = pd.DataFrame(time_rows)
    across = across_datasets(trials, baseline, method, metrics, level, seed) if not trials.empty else pd.DataFrame()
    return Comparison(baseline, method, table, recipes, conv_df, time_df, across, notes,
                      trial_ids=sorted(trials["trial_id"].astype(str)) if not trials.empty else [])


def _holm_by(df: pd.DataFrame, by: list[str], pairs: list[tuple[str, str]]) -> pd.DataFrame:
    df = df.copy()
    for src, dst in pairs:
        df[dst] = math.nan
        for _, idx in df.groupby(by, sort=False).groups.items():
            adj, _ = stats.holm(df.loc[idx, src].to_numpy(dtype=float))
            df.loc[idx, dst] = adj
    return df


def across_datasets(trials: pd.DataFrame, baseline: str, method: str, metrics: Sequence[str] = METRICS,
                    level: float = stats.LEVEL, seed: int = 0) -> pd.DataFrame:
    """Per (mode, metric): Wilcoxon signed-rank on per-dataset mean differences, the IQM of
    baseline-normalised scores (each run ÷ its dataset's baseline mean) with a stratified
    bootstrap CI, and the mean probability of improvement."""
    rows = []
    for mode_, tm in trials.groupby("mode", sort=True):
        for m in metrics:
            if m not in tm.columns:
                continue
            diffs, norm_m, norm_b, pis, used = [], {}, {}, [], []
            for ds, g in tm.groupby("dataset", sort=True):
                a = g.loc[g["recipe"] == baseline, m].to_numpy(dtype=float)
                b = g.loc[g["recipe"] == method, m].to_numpy(dtype=float)
                a, b = a[np.isfinite(a)], b[np.isfinite(b)]
                if len(a) == 0 or len(b) == 0:
                    continue
                used.append(ds)
                diffs.append(b.mean() - a.mean())
                pis.append(stats.prob_improvement(a, b))
                nm, nb = stats.normalise_by_baseline(a, b), stats.normalise_by_baseline(a, a)
                if np.isfinite(nm).all():
                    norm_m[ds], norm_b[ds] = nm, nb
            w = stats.wilcoxon_signed_rank(diffs)
            im = stats.stratified_bootstrap_iqm(norm_m, level, seed=seed)
            ib = stats.stratified_bootstrap_iqm(norm_b, level, seed=seed)
            dropped = sorted(set(used) - set(norm_m))
            note = w.note
            if dropped:
                note = "; ".join(x for x in (note, f"not normalisable (baseline mean 0): {', '.join(dropped)}") if x)
            rows.append({"mode": mode_, "metric": m, "datasets": len(used), "dataset_list": ",".join(used),
                         "mean_diff": float(np.mean(diffs)) if diffs else math.nan,
                         "wilcoxon_stat": w.statistic, "wilcoxon_p": w.p, "wilcoxon_min_p": w.min_p,
                         "iqm_method": im.value, "iqm_method_lo": im.lo, "iqm_method_hi": im.hi,
                         "iqm_baseline": ib.value, "iqm_baseline_lo": ib.lo, "iqm_baseline_hi": ib.hi,
                         "mean_p_improvement": float(np.mean(pis)) if pis else math.nan, "notes": note})
    df = pd.DataFrame(rows)
    if not df.empty:
        df = _holm_by(df, ["mode"], [("wilcoxon_p", "wilcoxon_p_holm")])
    return df


# ---------------------------------------------------------------------------------------------
# Rendering: strings for people (console, Markdown), numbers for machines (CSV)

def fmt_num(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(float(p)):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    if mean is None or not math.isfinite(float(mean)):
        return "n/a"
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def display_tables(cmp: Comparison) -> list[tuple[str, pd.DataFrame]]:
    """Human-readable tables: one per (mode, dataset), then one for the across-dataset tests."""
    out: list[tuple[str, pd.DataFrame]] = []
    b, m = cmp.baseline, cmp.method
    for mode_, ds in cmp.groups():
        t = cmp.table[(cmp.table["mode"] == mode_) & (cmp.table["dataset"] == ds)]
        rec = cmp.recipes[(cmp.recipes["mode"] == mode_) & (cmp.recipes["dataset"] == ds)].set_index("recipe")
        n_b = int(rec.loc[b, "seeds"]) if b in rec.index else 0
        n_m = int(rec.loc[m, "seeds"]) if m in rec.index else 0
        rows = []
        for r in t.to_dict("records"):
            rows.append({"metric": METRIC_LABELS.get(r["metric"], r["metric"]),
                         f"{b} (n={n_b})": fmt_ci(r["baseline_mean"], r["baseline_lo"], r["baseline_hi"]),
                         f"{m} (n={n_m})": fmt_ci(r["method_mean"], r["method_lo"], r["method_hi"]),
                         "Δ [bootstrap CI]": fmt_ci(r["diff_mean"], r["diff_lo"], r["diff_hi"]),
                         "Welch p (Holm)": f"{fmt_p(r['welch_p'])} ({fmt_p(r['welch_p_holm'])})",
                         "MW p (Holm)": f"{fmt_p(r['mw_p'])} ({fmt_p(r['mw_p_holm'])})",
                         "Hedges g": fmt_num(r["hedges_g"]), f"P({m}>{b})": fmt_num(r["p_improvement"])})
        conv = cmp.convergence
        conv = conv[(conv["mode"] == mode_) & (conv["dataset"] == ds)] if not conv.empty else conv
        if not conv.empty:
            cr = conv.set_index("recipe")
            target = float(conv["target"].iloc[0])

            def ep(r: str) -> str:
                if r not in cr.index:
                    return "n/a"
                e = cr.loc[r, "epochs_mean_curve"]
                reached = f"{int(cr.loc[r, 'seeds_reached'])}/{int(cr.loc[r, 'seeds'])} seeds"
                return (f"epoch {int(e)} ({reached})" if math.isfinite(e) else f"never ({reached})")

            sp = cr.loc[m, "speedup"] if m in cr.index else math.nan
            rows.append({"metric": f"epochs to {target:.1f}% (90% of {b} best)", f"{b} (n={n_b})": ep(b),
                         f"{m} (n={n_m})": ep(m), "Δ [bootstrap CI]": f"{fmt_num(sp, 1)}× (>1: {m} converges faster)"
                         if math.isfinite(sp) else "n/a"})
        tm = cmp.time
        tm = tm[(tm["mode"] == mode_) & (tm["dataset"] == ds)] if not tm.empty else tm
        for col, label, unit in (("seconds_per_epoch", "seconds / epoch", f"× speed per epoch (>1: {m} faster)"),
                                 ("samples_per_s", "samples / s", f"× throughput (>1: {m} faster)"),
                                 ("total_seconds", "total seconds", f"× speed of the whole run (>1: {m} faster)")):
            if f"{col}_mean" not in rec.columns:
                continue
            cell = {}
            for r in (b, m):
                cell[r] = (fmt_ci(rec.loc[r, f"{col}_mean"], rec.loc[r, f"{col}_lo"], rec.loc[r, f"{col}_hi"], 1)
                           if r in rec.index else "n/a")
            ratio = "n/a"
            if not tm.empty and f"{col}_speedup" in tm.columns:
                x = tm.iloc[0]
                ratio = f"{fmt_ci(x[f'{col}_speedup'], x[f'{col}_speedup_lo'], x[f'{col}_speedup_hi'])}{unit}"
            rows.append({"metric": label, f"{b} (n={n_b})": cell[b], f"{m} (n={n_m})": cell[m],
                         "Δ [bootstrap CI]": ratio})
        out.append((f"{ds} — {mode_}", pd.DataFrame(rows).fillna("")))
    if not cmp.across.empty:
        rows = []
        for r in cmp.across.to_dict("records"):
            rows.append({"mode": r["mode"], "metric": METRIC_LABELS.get(r["metric"], r["metric"]),
                         "datasets": int(r["datasets"]), "mean Δ": fmt_num(r["mean_diff"]),
                         "Wilcoxon p (Holm)": f"{fmt_p(r['wilcoxon_p'])} ({fmt_p(r['wilcoxon_p_holm'])})",
                         "min attainable p": fmt_p(r["wilcoxon_min_p"]),
                         f"IQM {m}/{b}": fmt_ci(r["iqm_method"], r["iqm_method_lo"], r["iqm_method_hi"]),
                         f"IQM {b}/{b}": fmt_ci(r["iqm_baseline"], r["iqm_baseline_lo"], r["iqm_baseline_hi"]),
                         f"mean P({m}>{b})": fmt_num(r["mean_p_improvement"]), "notes": r["notes"]})
        out.append(("across datasets", pd.DataFrame(rows)))
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


def comparison_markdown(cmp: Comparison) -> str:
    parts = [f"# {cmp.method} vs {cmp.baseline}\n"]
    for title, df in display_tables(cmp):
        parts.append(f"## {title}\n\n{to_markdown(df)}")
    if cmp.notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in cmp.notes) + "\n")
    return "\n".join(parts)


def write_comparison(cmp: Comparison, out_dir: str | Path, stem: str = "compare") -> list[Path]:
    """CSV (numbers) and Markdown (the printed tables) files; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in (("table", cmp.table), ("recipes", cmp.recipes), ("convergence", cmp.convergence),
                     ("time", cmp.time), ("across", cmp.across)):
        p = out / f"{stem}_{name}.csv"
        df.to_csv(p, index=False)
        written.append(p)
    p = out / f"{stem}.md"
    p.write_text(comparison_markdown(cmp))
    written.append(p)
    return written
