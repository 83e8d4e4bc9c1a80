"""The report: figures, tables and one self-contained HTML page, regenerated from the store.

    paths = build_report(load_store("results"), "reports")

Writes `index.html` (figures embedded as base64 PNG, so the file can be mailed or archived
alone), every figure as PNG and SVG under `figures/`, and every table as CSV under `tables/`.
It works on a store that is still filling: what is missing is listed, never filled in.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import claims as claims_mod
from . import plots
from .ablations import METRIC_LABELS as ABLATION_LABELS
from .ablations import Ablation, find_ablations, is_comparison_sweep, sweep_keys
from .compare import Comparison, check_recipes, compare, display_tables, fmt_ci, fmt_num, fmt_p
from .load import COMPLETED, Store, provenance

THESIS_DATASETS = ("flowers102", "fgvc_aircraft", "stanford_cars", "oxford_pet")
CURVE_METRICS = ("test_top1", "knn_top1")


@dataclass
class ReportResult:
    out_dir: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
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

    def table(self, df: pd.DataFrame, caption: str = "", csv_name: str | None = None,
              csv_df: pd.DataFrame | None = None) -> None:
        if csv_name:
            self.tab_dir.mkdir(parents=True, exist_ok=True)
            p = self.tab_dir / f"{csv_name}.csv"
            (csv_df if csv_df is not None else df).to_csv(p, index=False)
            self.tables.append(p)
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
"""


def build_report(store: Store, out_dir: str | Path = "reports", baseline: str = "sota", method: str = "tort",
                 title: str = "tort report") -> ReportResult:
    check_recipes(store, (baseline, method))  # a typo must not read as "no trials yet"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = _Page(out)
    missing: list[str] = []
    ablations = find_ablations(store)
    ablation_sweeps = {a.sweep for a in ablations}

    _status_section(page, store, missing)
    comparisons = _comparison_section(page, store, baseline, method, ablation_sweeps, missing)
    _ablation_section(page, store, ablations, missing)
    _claims_section(page, ablations, missing)
    _provenance_section(page, store)

    head = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="sub">{html.escape(method)} vs {html.escape(baseline)} · generated '
            f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from <code>{html.escape(str(store.path or '(memory)'))}"
            f"</code> · {len(store.trials)} trials</p>"]
    if missing:
        head.append('<div class="missing"><b>Missing or incomplete:</b><ul>'
                    + "".join(f"<li>{html.escape(m)}</li>" for m in missing) + "</ul></div>")
    head.append("<nav><b>Contents</b><ul>" + "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>'
                                                      for a, t in page.toc) + "</ul></nav>")
    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>" + "".join(head) + "".join(page.parts) + "</body></html>")
    index = out / "index.html"
    index.write_text(doc, encoding="utf-8")
    return ReportResult(out, index, page.figures, page.tables, missing, comparisons)


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
        st = store.sweep_trials(sw) if sw is not None else t
        counts = st["status"].value_counts().to_dict() if not st.empty else {}
        pending = store.sweep_pending(sw) if sw is not None else 0
        rows.append({"sweep": sw or "(no sweep)", "keys varied": ", ".join(sweep_keys(store, sw)) if sw else "",
                     "recipes": ", ".join(sorted(set(st["recipe"]))) if "recipe" in st and len(st) else "",
                     "datasets": ", ".join(sorted(set(st["dataset"]))) if "dataset" in st and len(st) else "",
                     "completed": int(counts.get(COMPLETED, 0)), "failed": int(counts.get("failed", 0)),
                     "running / stopped": int(sum(v for k, v in counts.items() if k not in (COMPLETED, "failed"))),
                     "not started": pending})
        if pending:
            missing.append(f"sweep {sw}: {pending} planned trial(s) not started")
    page.table(pd.DataFrame(rows), "trials per sweep (a trial shared by sweeps counts in each)", "status")
    running = t[~t["status"].isin([COMPLETED, "failed"])] if not t.empty else t
    if len(running):
        missing.append(f"{len(running)} trial(s) not finished ({', '.join(sorted(set(running['status'])))}); "
                       f"their numbers are left out")


def comparison_curves(store: Store, cmp: Comparison) -> dict[str, dict[str, dict[str, pd.DataFrame]]]:
    """mode → dataset → recipe → per-epoch rows of the trials the comparison used."""
    t = store.trials[store.trials["trial_id"].astype(str).isin(set(cmp.trial_ids))]
    out: dict[str, dict[str, dict[str, pd.DataFrame]]] = {}
    for mode in sorted(set(t["mode"])):
        mt = t[t["mode"] == mode]
        out[mode] = {ds: {r: store.curves(mt.loc[(mt["dataset"] == ds) & (mt["recipe"] == r), "trial_id"])
                          for r in (cmp.method, cmp.baseline)} for ds in sorted(set(mt["dataset"]))}
    return out


def comparison_figures(store: Store, cmp: Comparison):
    """(file stem, caption, Figure) for every mode and curve metric of a comparison."""
    for mode, curves in comparison_curves(store, cmp).items():
        nums = "4.1–4.4" if mode == "scratch" else "4.5–4.8"
        for metric in CURVE_METRICS:
            label = "test top-1" if metric == "test_top1" else "k-NN top-1"
            caption = f"{label} vs epoch, {mode}" + (f" (thesis figures {nums})" if metric == "test_top1" else "")
            yield f"curves_{mode}_{metric}", caption, plots.curve_figure(curves, metric, mode)


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


def _comparison_section(page: _Page, store: Store, baseline: str, method: str, ablation_sweeps: set[str],
                        missing: list[str]) -> list[Comparison]:
    page.h(2, f"{method} vs {baseline}", "comparison")
    page.p("Per dataset: mean over seeds with a Student-t 95% CI; Δ = method − baseline with a percentile "
           "bootstrap CI; Welch's t and Mann–Whitney p-values with Holm correction over the datasets of a "
           "mode (one family per test and metric); Hedges' g; P(method > baseline) over all pairs of runs. "
           "Convergence: first epoch at which the seed-mean test top-1 reaches 90% of the baseline's best. "
           "Time: mean seconds per epoch and samples per second; ratios > 1 mean the method is faster. "
           "Across datasets: Wilcoxon signed-rank on the per-dataset mean differences (Holm over metrics) and "
           "the interquartile mean of baseline-normalised scores with a stratified-bootstrap CI.")
    results: list[Comparison] = []
    modes_seen: set[str] = set()
    for name, sub, ids in comparison_blocks(store, ablation_sweeps):
        t = sub.trials
        if ids is not None:
            t = t[t["trial_id"].astype(str).isin(set(ids))]
        if not {baseline, method} <= set(t.get("recipe", pd.Series(dtype=str))):
            continue
        page.h(3, f"{name}", f"cmp-{_slug(name)}")
        cmp = compare(sub, baseline, method, trial_ids=ids)
        results.append(cmp)
        pending = sub.sweep_pending(name) if ids is not None else 0
        if pending:
            cmp.notes.append(f"{pending} planned trial(s) not started yet")
        for title, df in display_tables(cmp):
            page.table(df, title, f"{_slug(name)}_{_slug(title)}")
        if cmp.notes:
            page.ul(cmp.notes, "missing")
            missing.extend(f"{name}: {n}" for n in cmp.notes)
        used = t[t["trial_id"].astype(str).isin(set(cmp.trial_ids))]
        modes_seen |= set(used["mode"])
        for mode in sorted(set(used["mode"])):
            present = set(used.loc[used["mode"] == mode, "dataset"])
            absent = [d for d in THESIS_DATASETS if d not in present]
            if absent and present & set(THESIS_DATASETS):
                missing.append(f"{name}, {mode}: thesis datasets without trials: {', '.join(absent)}")
        for stem, caption, fig in comparison_figures(store, cmp):
            page.figure(fig, f"{_slug(name)}_{stem}", f"{name}: {caption}")
    if not results:
        page.p(f"No completed {method} and {baseline} trials to compare yet: run `tort compare`.", "missing")
        missing.append(f"no {method} vs {baseline} comparison")
    for mode in ("scratch", "finetune"):
        if mode not in modes_seen:
            figs = "4.1–4.4" if mode == "scratch" else "4.5–4.8"
            page.p(f"No {mode} comparison: thesis figures {figs} cannot be drawn yet.", "missing")
            missing.append(f"no {mode} comparison (thesis figures {figs})")
    return results


def _ablation_section(page: _Page, store: Store, ablations: list[Ablation], missing: list[str]) -> None:
    page.h(2, "Ablations", "ablations")
    if not ablations:
        page.p("No ablation sweeps in the store yet (a sweep whose trials differ in a config key other than "
               "seed, dataset or recipe).", "missing")
    for ab in ablations:
        anchor = f"ab-{_slug(ab.sweep)}"
        page.h(3, f"{ab.key} — sweep {ab.sweep}", anchor)
        claim = claims_mod.CLAIMS.get(ab.keys[0]) if len(ab.keys) == 1 else None
        page.p(f"values: {', '.join(ab.values)}; reference: {ab.default} ({ab.default_source}). "
               + (f"Thesis: {claim.text}." if claim else "The thesis makes no claim about this key."))
        for a in claims_mod.assess(ab):
            cls = "v-" + a.verdict.replace(" ", "")
            page.raw(f'<p><span class="{cls}">{html.escape(a.verdict)}</span> — {html.escape(a.data_says)}'
                     + "".join(f" {html.escape(d)}" for d in a.details) + "</p>")
        if ab.notes:
            page.ul(ab.notes, "missing")
        failures = ab.failures
        if not failures.empty and (failures["status"] != COMPLETED).any():
            bad = failures[failures["status"] != COMPLETED]
            page.table(bad, "trials not completed", f"ablation_{_slug(ab.sweep)}_incomplete")
            missing.append(f"ablation {ab.sweep}: {int(bad['trials'].sum())} trial(s) not completed")
        shown = _ablation_display(ab)
        page.table(shown, f"each value against the reference {ab.default} (Holm over the values of one "
                   f"dataset and metric)", f"ablation_{_slug(ab.sweep)}", csv_df=ab.table)
        primary = claim.metric if claim else None
        if ab.table.empty:
            page.p("No completed trials yet.", "missing")
            continue
        page.figure(plots.ablation_figure(ab, primary, as_bars=True if ab.keys[0] == "loss.enabled" else None),
                    f"ablation_{_slug(ab.sweep)}", f"{ab.key}: metrics against the swept value")
        if claim and claim.kind == "faster_loss" and "loss_distill" in store.epochs:
            page.figure(plots.ablation_curves_figure(ab, store.epochs, "loss_distill"),
                        f"ablation_{_slug(ab.sweep)}_loss_distill", f"{ab.key}: distillation loss per epoch")


def _ablation_display(ab: Ablation) -> pd.DataFrame:
    if ab.table.empty:
        return ab.table
    rows = []
    for r in ab.table.to_dict("records"):
        ref = r["is_default"]
        rows.append({"dataset": r["dataset"], "metric": ABLATION_LABELS.get(r["metric"], r["metric"]),
                     "value": r["value"] + (" (ref)" if ref else ""), "n": int(r["n"]),
                     "mean [95% CI]": fmt_ci(r["mean"], r["lo"], r["hi"]),
                     "Δ vs ref [bootstrap CI]": "" if ref else fmt_ci(r["diff"], r["diff_lo"], r["diff_hi"]),
                     "Welch p (Holm)": "" if ref else f"{fmt_p(r['welch_p'])} ({fmt_p(r['welch_p_holm'])})",
                     "MW p (Holm)": "" if ref else f"{fmt_p(r['mw_p'])} ({fmt_p(r['mw_p_holm'])})",
                     "Hedges g": "" if ref else fmt_num(r["hedges_g"])})
    return pd.DataFrame(rows)


def _claims_section(page: _Page, ablations: list[Ablation], missing: list[str]) -> None:
    page.h(2, "Thesis claims vs data", "claims")
    rows = []
    seen = set()
    for ab in ablations:
        for a in claims_mod.assess(ab):
            if a.verdict != claims_mod.NO_CLAIM:
                rows.append({"sweep": ab.sweep, **a.as_row()})
                seen.add(a.key)
    for key, c in claims_mod.CLAIMS.items():
        if key not in seen:
            rows.append({"sweep": "—", "key": key, "thesis claim": c.text, "metric": c.metric,
                         "what the data say": "no ablation sweep of this key in the store", "verdict": "not run"})
            missing.append(f"no ablation sweep of {key}")
    page.p("Verdicts: consistent = the data agree with a significant test (or, for 'no effect', no significant "
           "difference); direction only = the data lean the claimed way without significance; not supported / "
           "contradicted = they do not, or significantly show the opposite.")
    page.table(pd.DataFrame(rows), "", "claims")


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
