"""The report: figures, tables and one self-contained HTML page, regenerated from the store.

    paths = build_report(load_store("results"), "reports")

Writes `index.html` (figures embedded as base64 PNG, so the file can be mailed or archived
alone), every figure as PNG and SVG under `figures/`, and every table as CSV under `tables/`.
It works on a store that is still filling: what was asked for and is not done yet (planned,
running or failed trials) is listed as missing; what was never asked for (a thesis dataset, a
fine-tuning comparison, an ablation without a sweep in this store) is listed once as not run.
Every block states its settings; docs/statistics.md says what each number means.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tort_core.catalog import THESIS_DATASETS, metric_label

from . import claims as claims_mod
from . import plots
from .ablations import Ablation, find_ablations, is_comparison_sweep, sweep_keys
from .across import friedman_nemenyi, performance_profile, score_table
from .compare import (PRIMARY_METRIC, Comparison, check_recipes, compare, display_tables, fmt_ci, fmt_num, fmt_p,
                      settings_text)
from .health import COLLAPSE_TOLERANCE, run_counts, teacher_collapse
from .load import COMPLETED, Store, provenance
from .reference import UPPER_REFERENCE, chance_for, chance_text, normalise
from .settings import describe_text

CURVE_METRICS = ("test_top1", "knn_top1")
PROFILE_TAUS = np.linspace(0.0, 1.0, 51)


@dataclass
class ReportResult:
    out_dir: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)   # asked for, not done (planned, running, failed)
    not_run: list[str] = field(default_factory=list)   # never asked for in this store
    comparisons: list[Comparison] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


class _Page:
    """Collects HTML fragments; figures are saved to disk and embedded in one go."""

    def __init__(self, out: Path):
        self.out = out
        self.fig_dir = out / "figures"
        self.tab_dir = out / "tables"
        self.parts: list[str] = []
        self.figures: list[Path] = []
        self.tables: list[Path] = []
        self.toc: list[tuple[str, str]] = []

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        if anchor and level == 2:
            self.toc.append((anchor, text))
        aid = f' id="{anchor}"' if anchor else ""
        self.parts.append(f"<h{level}{aid}>{html.escape(text)}</h{level}>")

    def p(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def ul(self, items: list[str], cls: str = "") -> None:
        if items:
            c = f' class="{cls}"' if cls else ""
            self.parts.append(f"<ul{c}>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")

    def csv(self, df: pd.DataFrame, name: str) -> None:
        self.tab_dir.mkdir(parents=True, exist_ok=True)
        p = self.tab_dir / f"{name}.csv"
        df.to_csv(p, index=False)
        self.tables.append(p)

    def table(self, df: pd.DataFrame, caption: str = "", csv_name: str | None = None,
              csv_df: pd.DataFrame | None = None) -> None:
        if csv_name:
            self.csv(csv_df if csv_df is not None else df, csv_name)
        if df.empty:
            self.p(f"{caption}: no rows." if caption else "no rows.", "missing")
            return
        shown = df.copy()
        for c in shown.columns:
            if pd.api.types.is_float_dtype(shown[c]):
                shown[c] = shown[c].map(lambda v: fmt_num(v, 3))
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        body = shown.to_html(index=False, escape=True, na_rep="n/a", border=0, classes="t")
        self.parts.append(f'<div class="tw">{body.replace("<thead>", cap + "<thead>", 1)}</div>')

    def figure(self, fig, name: str, caption: str) -> None:
        paths = plots.save(fig, self.fig_dir, name)
        self.figures.extend(paths)
        png = next(p for p in paths if p.suffix == ".png")
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        links = " · ".join(f'<a href="figures/{p.name}">{p.suffix[1:].upper()}</a>' for p in paths)
        self.parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                          f"<figcaption>{html.escape(caption)} ({links})</figcaption></figure>")

    def raw(self, fragment: str) -> None:
        self.parts.append(fragment)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1.2em;
color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.sub{color:#666;margin-top:0}.missing{color:#9a5b00}.tw{overflow-x:auto;margin:.6em 0}
table.t{border-collapse:collapse;font-size:.85em}table.t th,table.t td{border:1px solid #ddd;padding:.25em .5em;
text-align:left;vertical-align:top}table.t th{background:#f3f3f3}table.t tr:nth-child(even) td{background:#fafafa}
caption{text-align:left;font-weight:600;padding:.3em 0}figure{margin:1em 0}figure img{max-width:100%;
border:1px solid #eee}figcaption{font-size:.85em;color:#555}nav ul{columns:2}code{background:#f3f3f3;padding:0 .2em}
.v-consistent{color:#17692c;font-weight:600}.v-contradicted{color:#b00020;font-weight:600}
.v-notsupported{color:#b00020}.v-directiononly{color:#8a6d00}.v-insufficientdata,.v-noclaim{color:#666}
.v-equivalent{color:#17692c;font-weight:600}.v-different{color:#b00020;font-weight:600}.v-inconclusive{color:#8a6d00}
.flag{color:#b00020}.notrun{color:#555}.settings{color:#333;font-size:.9em;background:#f7f7f7;padding:.3em .5em}
"""


def build_report(store: Store, out_dir: str | Path = "reports", baseline: str = "sota", method: str = "tort",
                 title: str = "tort report", margins: dict[str, float] | None = None,
                 failed_as_chance: bool = False) -> ReportResult:
    """margins: equivalence margin per "no effect" claim key (`claims.margins`); failed_as_chance:
    score failed runs at chance in the comparisons instead of leaving them out."""
    check_recipes(store, (baseline, method))  # a typo must not read as "no trials yet"
    margin_by_key = claims_mod.margins(margins)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = _Page(out)
    missing: list[str] = []
    not_run: list[str] = []
    ablations = find_ablations(store)
    ablation_sweeps = {a.sweep for a in ablations}

    _status_section(page, store, missing)
    comparisons = _comparison_section(page, store, baseline, method, ablation_sweeps, missing, not_run,
                                      failed_as_chance)
    _ablation_section(page, store, ablations, missing, margin_by_key)
    _claims_section(page, ablations, not_run, margin_by_key)
    _provenance_section(page, store)

    head = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="sub">{html.escape(method)} vs {html.escape(baseline)} · generated '
            f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from <code>{html.escape(str(store.path or '(memory)'))}"
            f"</code> · {len(store.trials)} trials · statistics explained in docs/statistics.md</p>"]
    if missing:
        head.append('<div class="missing"><b>Missing or incomplete (asked for, not done):</b><ul>'
                    + "".join(f"<li>{html.escape(m)}</li>" for m in missing) + "</ul></div>")
    if not_run:
        head.append('<div class="notrun"><b>Not run in this store</b> (nothing asked for it):<ul>'
                    + "".join(f"<li>{html.escape(m)}</li>" for m in not_run) + "</ul></div>")
    head.append("<nav><b>Contents</b><ul>" + "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>'
                                                      for a, t in page.toc) + "</ul></nav>")
    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>" + "".join(head) + "".join(page.parts) + "</body></html>")
    index = out / "index.html"
    index.write_text(doc, encoding="utf-8")
    return ReportResult(out, index, page.figures, page.tables, missing, not_run, comparisons)


# ---------------------------------------------------------------------------------------------

def _status_section(page: _Page, store: Store, missing: list[str]) -> None:
    page.h(2, "Store status", "status")
    t = store.trials
    if t.empty and store.members.empty:
        page.p("The store holds no trials yet.", "missing")
        missing.append("no trials in the store")
        return
    rows = []
    for sw in store.sweeps() or [None]:
        st_ = store.sweep_trials(sw) if sw is not None else t
        counts = st_["status"].value_counts().to_dict() if not st_.empty else {}
        pending = store.sweep_pending(sw) if sw is not None else 0
        done, failed = int(counts.get(COMPLETED, 0)), int(counts.get("failed", 0))
        rows.append({"sweep": sw or "(no sweep)", "keys varied": ", ".join(sweep_keys(store, sw)) if sw else "",
                     "recipes": ", ".join(sorted(set(st_["recipe"]))) if "recipe" in st_ and len(st_) else "",
                     "datasets": ", ".join(sorted(set(st_["dataset"]))) if "dataset" in st_ and len(st_) else "",
                     "completed": done, "failed": failed,
                     "failure rate": f"{100 * failed / (done + failed):.0f}%" if done + failed else "n/a",
                     "running / stopped": int(sum(v for k, v in counts.items() if k not in (COMPLETED, "failed"))),
                     "not started": pending})
        if pending:
            missing.append(f"sweep {sw}: {pending} planned trial(s) not started")
        if failed:
            missing.append(f"sweep {sw}: {failed} trial(s) failed")
    page.table(pd.DataFrame(rows), "trials per sweep (a trial shared by sweeps counts in each)", "status")
    running = t[~t["status"].isin([COMPLETED, "failed"])] if not t.empty else t
    if len(running):
        missing.append(f"{len(running)} trial(s) not finished ({', '.join(sorted(set(running['status'])))}); "
                       f"their numbers are left out")
    collapsed = teacher_collapse(t[t["status"] == COMPLETED], store.epochs) if not t.empty else pd.DataFrame()
    if not collapsed.empty:
        n = int(collapsed["collapsed"].sum())
        text = (f"Teacher collapse (last epoch's teacher entropy within {100 * COLLAPSE_TOLERANCE:.0f}% of "
                f"log(heads.out_dim), the uniform teacher): {n} of {len(collapsed)} completed runs with a recorded "
                f"teacher entropy.")
        page.p(("⚠ " if n else "") + text, "flag" if n else "")


def comparison_curves(store: Store, cmp: Comparison) -> dict[str, dict[str, dict[str, pd.DataFrame]]]:
    """mode → dataset → recipe → per-epoch rows of the trials the comparison used."""
    t = store.trials[store.trials["trial_id"].astype(str).isin(set(cmp.trial_ids))]
    t = t[t["status"] == COMPLETED]
    out: dict[str, dict[str, dict[str, pd.DataFrame]]] = {}
    for mode in sorted(set(t["mode"])):
        mt = t[t["mode"] == mode]
        out[mode] = {ds: {r: store.curves(mt.loc[(mt["dataset"] == ds) & (mt["recipe"] == r), "trial_id"])
                          for r in (cmp.method, cmp.baseline)} for ds in sorted(set(mt["dataset"]))}
    return out


def comparison_figures(store: Store, cmp: Comparison):
    """(file stem, caption, Figure) for every mode and curve metric of a comparison, and its
    performance profile."""
    for mode, curves in comparison_curves(store, cmp).items():
        nums = "4.1–4.4" if mode == "scratch" else "4.5–4.8"
        chance = {ds: chance_for(ds, store.trials) for ds in curves}
        for metric in CURVE_METRICS:
            caption = (f"{metric_label(metric)} vs epoch, {mode}; dotted: chance"
                       + (f" (thesis figures {nums})" if metric == "test_top1" else ""))
            yield f"curves_{mode}_{metric}", caption, plots.curve_figure(curves, metric, mode, chance=chance)
        prof = _profile(store, cmp, mode)
        if prof is not None:
            caption = (f"performance profile, {mode}: fraction of runs whose {metric_label(PRIMARY_METRIC)}, "
                       f"normalised (chance → 0, {UPPER_REFERENCE:g}% → 1), exceeds τ; "
                       f"bands: stratified bootstrap")
            yield f"profile_{mode}", caption, plots.performance_profile_figure(prof, caption.split(":")[0])


def _profile(store: Store, cmp: Comparison, mode: str) -> pd.DataFrame | None:
    t = store.trials[store.trials["trial_id"].astype(str).isin(set(cmp.trial_ids))]
    t = t[(t["status"] == COMPLETED) & (t["mode"] == mode)]
    if t.empty or PRIMARY_METRIC not in t:
        return None
    scores: dict[str, dict[str, np.ndarray]] = {}
    for (recipe, ds), g in t.groupby(["recipe", "dataset"]):
        c = chance_for(ds, store.trials)
        if math.isfinite(c):
            scores.setdefault(str(recipe), {})[str(ds)] = normalise(g[PRIMARY_METRIC].to_numpy(dtype=float), c)
    if not scores:
        return None
    return performance_profile({r: scores[r] for r in (cmp.baseline, cmp.method) if r in scores}, PROFILE_TAUS)


def comparison_blocks(store: Store, ablation_sweeps: set[str]) -> list[tuple[str, Store, list[str] | None]]:
    """One block per comparison sweep (recipe as an axis: what `tort compare` runs); without any,
    one block over every trial outside the ablation sweeps."""
    sweeps = [s for s in store.sweeps() if s not in ablation_sweeps and is_comparison_sweep(store, s)]
    if sweeps:
        return [(s, store, list(store.sweep_trials(s)["trial_id"].astype(str))) for s in sweeps]
    t = store.trials
    if t.empty:
        return []
    ablation_ids = set(store.members.loc[store.members["sweep"].isin(ablation_sweeps), "trial_id"].astype(str))
    main = t[~t["trial_id"].astype(str).isin(ablation_ids)]
    return [("all trials outside ablation sweeps", Store(store.epochs, main, store.path, store.members), None)]


STATS_NOTE = ("Primary test of each comparison: Welch's t on the final test top-1 (last epoch), per dataset, "
              "Holm-corrected over the datasets of a mode; every other number is secondary. Means: Student-t 95% "
              "CI over seeds. Δ = method − baseline with Welch's 95% interval (its coverage is measured in "
              "docs/statistics.md). Mann–Whitney p beside its floor, the smallest p the test can reach with these "
              "seeds. Smallest Δ detectable: at 80% power from the observed spread. Convergence: epochs until the "
              "seed-mean test top-1 reaches 90% of the baseline's best; the speed-up (ratio of per-seed epochs, "
              "Welch interval on the log scale) only where that target is meaningfully above chance. Time ratios "
              "only between runs on the same recorded hardware. Across datasets: IQM of scores normalised by "
              "chance and 100% top-1, and the mean P(method > baseline), with stratified-bootstrap intervals over "
              "both arms; Wilcoxon signed-rank on per-dataset differences with its floor.")


def _comparison_section(page: _Page, store: Store, baseline: str, method: str, ablation_sweeps: set[str],
                        missing: list[str], not_run: list[str], failed_as_chance: bool) -> list[Comparison]:
    page.h(2, f"{method} vs {baseline}", "comparison")
    page.p(STATS_NOTE)
    results: list[Comparison] = []
    modes_seen: set[str] = set()
    datasets_seen: set[str] = set()
    for name, sub, ids in comparison_blocks(store, ablation_sweeps):
        t = sub.trials
        if ids is not None:
            t = t[t["trial_id"].astype(str).isin(set(ids))]
        if not {baseline, method} <= set(t.get("recipe", pd.Series(dtype=str))):
            continue
        page.h(3, f"{name}", f"cmp-{_slug(name)}")
        cmp = compare(sub, baseline, method, trial_ids=ids, failed_as_chance=failed_as_chance)
        results.append(cmp)
        page.p(f"Settings: {settings_text(cmp)}", "settings")
        pending = sub.sweep_pending(name) if ids is not None else 0
        if pending:
            cmp.notes.append(f"{pending} planned trial(s) not started yet")
        for dt in display_tables(cmp):
            page.table(dt.df, dt.title, f"{_slug(name)}_{_slug(dt.title)}")
            page.ul(dt.notes, "flag")
        if cmp.notes:
            page.ul(cmp.notes, "missing")
            missing.extend(f"{name}: {n}" for n in cmp.notes if _is_incomplete(n))
        used = t[t["trial_id"].astype(str).isin(set(cmp.trial_ids))]
        modes_seen |= set(used["mode"])
        datasets_seen |= set(used["dataset"])
        for stem, caption, fig in comparison_figures(store, cmp):
            page.figure(fig, f"{_slug(name)}_{stem}", f"{name}: {caption}")
        _ranking_block(page, t[t["status"] == COMPLETED], "recipe", name, store)
    if not results:
        page.p(f"No completed {method} and {baseline} trials to compare yet: run `tort compare`.", "missing")
        not_run.append(f"a {method} vs {baseline} comparison (`tort compare`)")
    for mode in ("scratch", "finetune"):
        if mode not in modes_seen:
            figs = "4.1–4.4" if mode == "scratch" else "4.5–4.8"
            not_run.append(f"a {mode} comparison (thesis figures {figs})")
    absent = [d for d in THESIS_DATASETS if d not in datasets_seen]
    if absent:
        not_run.append(f"comparisons on the thesis datasets {', '.join(absent)}")
    return results


def _is_incomplete(note: str) -> bool:
    return any(w in note for w in ("not started", "not finished", "not completed", "no completed", "left out"))


def _ranking_block(page: _Page, trials: pd.DataFrame, arm: str, name: str, store: Store) -> None:
    """Friedman + Nemenyi over datasets for ≥ 3 arms (recipes or ablation values), with the CD diagram."""
    if trials.empty or arm not in trials or PRIMARY_METRIC not in trials:
        return
    values = trials.assign(_arm=trials[arm].astype(str))
    arms = values["_arm"].nunique()
    if arms < 3:
        return
    table = score_table(values, "dataset", "_arm", PRIMARY_METRIC)
    ranking = friedman_nemenyi(table)
    caption = (f"{name}: ranks of {arms} {'recipes' if arm == 'recipe' else 'values'} by seed-mean "
               f"{metric_label(PRIMARY_METRIC)} over datasets (1 = best)")
    if not math.isfinite(ranking.cd):
        page.p(f"{caption}: not computed — " + "; ".join(ranking.notes), "missing")
        return
    rows = [{"arm": a, "mean rank": r} for a, r in ranking.mean_ranks.items()]
    page.table(pd.DataFrame(rows), f"{caption}; Friedman χ² = {ranking.statistic:.2f}, p = {fmt_p(ranking.p)}, "
               f"Nemenyi CD = {ranking.cd:.2f} ({ranking.n_datasets} datasets)", f"ranks_{_slug(name)}")
    page.ul(ranking.notes, "flag")
    page.figure(plots.cd_diagram(ranking), f"cd_{_slug(name)}", f"{caption}: critical-difference diagram")


def _ablation_section(page: _Page, store: Store, ablations: list[Ablation], missing: list[str],
                      margin_by_key: dict[str, float]) -> None:
    page.h(2, "Ablations", "ablations")
    if not ablations:
        page.p("No ablation sweeps in the store (a sweep whose trials differ in a config key other than "
               "seed, dataset or recipe).")
    for ab in ablations:
        anchor = f"ab-{_slug(ab.sweep)}"
        page.h(3, f"{ab.key} — sweep {ab.sweep}", anchor)
        claim = claims_mod.CLAIMS.get(ab.keys[0]) if len(ab.keys) == 1 else None
        page.p(f"Settings: {describe_text(ab.trials)}", "settings")
        page.p(f"values: {', '.join(ab.values)}; reference: {ab.default} ({ab.default_source}). "
               + (f"Thesis: {claim.text}." if claim else "The thesis makes no claim about this key."))
        for a in claims_mod.assess(ab, margin_by_key):
            cls = "v-" + a.verdict.replace(" ", "")
            shown = html.escape(a.shown) + (f" — {html.escape(a.comparability)}" if a.comparability else "")
            page.raw(f'<p><span class="{cls}">{shown}</span> — {html.escape(a.data_says)}'
                     + "".join(f" {html.escape(d)}" for d in a.details) + "</p>")
        if ab.notes:
            page.ul(ab.notes, "missing")
        failures = ab.failures
        if not failures.empty and (failures["status"] != COMPLETED).any():
            bad = failures[failures["status"] != COMPLETED]
            missing.append(f"ablation {ab.sweep}: {int(bad['trials'].sum())} trial(s) not completed")
        collapsed = teacher_collapse(ab.trials[ab.trials["status"] == COMPLETED], store.epochs)
        shown, flags = _ablation_display(ab, collapsed, store)
        page.table(shown, f"each value against the reference {ab.default} (Holm over the values of one "
                   f"dataset and metric; Δ with Welch's 95% interval)", f"ablation_{_slug(ab.sweep)}", csv_df=ab.table)
        page.ul(flags, "flag")
        primary = claim.metric if claim else None
        if ab.table.empty:
            page.p("No completed trials yet.", "missing")
            continue
        chance = {ds: chance_for(ds, store.trials) for ds in ab.datasets}
        page.figure(plots.ablation_figure(ab, primary, as_bars=True if ab.keys[0] == "loss.enabled" else None,
                                          chance=chance),
                    f"ablation_{_slug(ab.sweep)}", f"{ab.key}: metrics against the swept value; dotted: chance")
        if claim and claim.kind == "faster_loss" and "loss_distill" in store.epochs:
            page.figure(plots.ablation_curves_figure(ab, store.epochs, "loss_distill"),
                        f"ablation_{_slug(ab.sweep)}_loss_distill", f"{ab.key}: distillation loss per epoch")
        done = ab.trials[ab.trials["status"] == COMPLETED]
        _ranking_block(page, done, "value", f"ablation {ab.sweep}", store)


def _ablation_display(ab: Ablation, collapsed: pd.DataFrame, store: Store) -> tuple[pd.DataFrame, list[str]]:
    if ab.table.empty:
        return ab.table, []
    counts = {}
    for (ds, v), g in ab.trials.groupby(["dataset", "value"]):
        counts[(ds, v)] = run_counts(g, collapsed)
    rows, flags = [], []
    for r in ab.table.to_dict("records"):
        ref = r["is_default"]
        c = counts.get((r["dataset"], r["value"]), {})
        runs = f"{c.get('completed', 0)}/{c.get('started', 0)}" + (f", {c['failed']} failed" if c.get("failed") else "")
        if c.get("collapsed") and c["collapsed"] == c["collapsed"]:
            runs += f", {int(c['collapsed'])} collapsed"
        rows.append({"dataset": r["dataset"], "metric": metric_label(r["metric"]),
                     "value": r["value"] + (" (ref)" if ref else ""), "runs done/started": runs,
                     "mean [95% CI]": fmt_ci(r["mean"], r["lo"], r["hi"], why=r.get("why", "")),
                     "Δ vs ref [95% Welch CI]": "" if ref else fmt_ci(r["diff"], r["diff_lo"], r["diff_hi"],
                                                                      why=r.get("diff_why", "")),
                     "Welch p (Holm)": "" if ref else f"{fmt_p(r['welch_p'])} ({fmt_p(r['welch_p_holm'])})",
                     "MW p (floor; Holm)": "" if ref else f"{fmt_p(r['mw_p'])} (floor {fmt_p(r['mw_min_p'])}; "
                                                          f"Holm {fmt_p(r['mw_p_holm'])})",
                     "smallest Δ detectable (80% power)": "" if ref else fmt_num(r["mde80"])})
        if ref and r["metric"] == PRIMARY_METRIC:
            ch = chance_for(r["dataset"], store.trials)
            if math.isfinite(ch) and r["lo"] <= ch <= r["hi"]:
                flags.append(f"⚠ {r['dataset']}: the reference {ab.default}'s interval [{fmt_num(r['lo'])}, "
                             f"{fmt_num(r['hi'])}] includes chance ({chance_text(ch)})")
    n_coll = int(collapsed["collapsed"].sum()) if not collapsed.empty else 0
    if n_coll:
        flags.append(f"⚠ teacher collapsed (entropy at its maximum, log out_dim) in {n_coll} of {len(collapsed)} "
                     f"completed runs")
    return pd.DataFrame(rows), flags


def _claims_section(page: _Page, ablations: list[Ablation], not_run: list[str],
                    margin_by_key: dict[str, float]) -> None:
    page.h(2, "Thesis claims vs data", "claims")
    rows, csv_rows = [], []
    seen = set()
    for ab in ablations:
        for a in claims_mod.assess(ab, margin_by_key):
            if a.verdict != claims_mod.NO_CLAIM:
                rows.append({"sweep": ab.sweep, **a.as_row()})
                seen.add(a.key)
    csv_rows = list(rows)
    absent = [key for key in claims_mod.CLAIMS if key not in seen]
    for key in absent:
        c = claims_mod.CLAIMS[key]
        csv_rows.append({"sweep": "—", "key": key, "thesis claim": c.text, "metric": metric_label(c.metric),
                         "what the data say": "no ablation sweep of this key in the store", "verdict": "not run",
                         "verdict on this data": "not run"})
    if absent:
        not_run.append(f"ablations of {', '.join(absent)} (the thesis's claims about them are not checked)")
    m = ", ".join(f"{k} ±{v:g}" for k, v in margin_by_key.items())
    page.p("\"No effect\" claims are tested as equivalence (two one-sided Welch tests, TOST) within a margin in "
           f"top-1 points ({m}; `tort report --margin` changes them): equivalent within ±m / different / "
           "inconclusive, with the smallest margin the data could support. Other claims: consistent = a significant "
           "test in the claimed direction; direction only = the claimed direction at p < 0.2, short of "
           "significance; inconclusive = a lean with p ≥ 0.2; not supported / contradicted = the other way, "
           "(not) significantly. A verdict on a profile other than the thesis's is shown as not comparable.")
    if rows:
        page.table(pd.DataFrame(rows), "", "claims", csv_df=pd.DataFrame(csv_rows))
    else:
        page.csv(pd.DataFrame(csv_rows), "claims")
        page.p("No ablation of a key the thesis makes a claim about is in this store.")
    if absent:
        page.p(f"Not run in this store: {', '.join(absent)}.")


def _provenance_section(page: _Page, store: Store) -> None:
    page.h(2, "Provenance", "provenance")
    prov = provenance(store)
    items = [f"results: {prov.get('results')}", f"trials: {prov.get('trials', 0)}"]
    if prov.get("status_counts"):
        items.append("status: " + ", ".join(f"{k} {v}" for k, v in prov["status_counts"].items()))
    if prov.get("seeds") is not None:
        items.append(f"seeds: {', '.join(map(str, prov['seeds'])) or '—'}")
    if prov.get("sweeps"):
        items.append(f"sweeps: {', '.join(prov['sweeps'])}")
    page.ul(items)
    env = prov.get("environment") or {}
    if env:
        rows = [{"field": k, "value": v, "trials": n} for k, vals in env.items() for v, n in vals.items()]
        page.table(pd.DataFrame(rows), "code, package versions and hardware recorded with the trials",
                   "provenance")
    else:
        page.p("The store records no commit, version or hardware columns.", "missing")
    failed = pd.DataFrame(prov.get("failed") or [])
    if failed.empty:
        page.p("No failed trials.")
    else:
        page.table(failed, "failed trials", "failed")
