"""Figures: learning curves (thesis figs 4.1–4.8), ablation plots, critical-difference diagrams
and performance profiles. matplotlib's Agg backend, seaborn styling; every function returns a
Figure, `save` writes it as PNG and SVG.

Bands and error bars are the same Student-t 95% intervals over seeds as in the tables, so a
figure and its table never disagree. Accuracy axes carry a chance line (100 / classes) where the
dataset's classes are known. Panels without data say so instead of drawing nothing. Labels come
from `tort_core.catalog.metric_label`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (or need a display)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from tort_core.catalog import metric_info, metric_label  # noqa: E402

from .ablations import Ablation, numeric_value  # noqa: E402
from .metrics import mean_curve  # noqa: E402

# The thesis's figure numbers: from scratch 4.1–4.4, fine-tuning 4.5–4.8.
THESIS_FIGURES = {("scratch", "flowers102"): "4.1", ("scratch", "fgvc_aircraft"): "4.2",
                  ("scratch", "stanford_cars"): "4.3", ("scratch", "oxford_pet"): "4.4",
                  ("finetune", "flowers102"): "4.5", ("finetune", "fgvc_aircraft"): "4.6",
                  ("finetune", "stanford_cars"): "4.7", ("finetune", "oxford_pet"): "4.8"}
# The thesis drew Tort in blue and SOTA in red; keep that so the figures read alike.
RECIPE_COLOURS = {"tort": "#1f77b4", "sota": "#d62728"}
CHANCE_STYLE = {"color": "0.35", "ls": ":", "lw": 1.2}


def is_accuracy(metric: str) -> bool:
    return metric_info(metric).kind == "accuracy"


def chance_line(ax, chance: float | None, horizontal: bool = True) -> None:
    """A dotted line at chance accuracy, labelled, where chance is known."""
    if chance is None or not math.isfinite(chance):
        return
    (ax.axhline if horizontal else ax.axvline)(chance, label=f"chance ({chance:.1f}%)", **CHANCE_STYLE)


def _style() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)


def _grid(n: int, max_cols: int = 4, size: tuple[float, float] = (4.2, 3.3)):
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.remove()
    return fig, list(flat[:n])


def no_data(ax, text: str = "no data yet") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _colour(recipe: str, i: int) -> str:
    return RECIPE_COLOURS.get(recipe, sns.color_palette()[(i + 2) % 10])


def curve_figure(curves: Mapping[str, Mapping[str, pd.DataFrame]], metric: str = "test_top1",
                 mode: str = "scratch", title: str | None = None, chance: Mapping[str, float] | None = None):
    """One panel per dataset: per recipe, the seed-mean curve of `metric` with a 95% band, and a
    chance line on accuracy panels.

    curves: dataset → recipe → that recipe's per-epoch rows (several trials = several seeds).
    chance: dataset → chance top-1 (%), NaN where unknown.
    """
    _style()
    datasets = list(curves) or ["(no dataset)"]
    fig, axes = _grid(len(datasets))
    for ax, ds in zip(axes, datasets):
        by_recipe = curves.get(ds, {})
        drawn = False
        for i, (recipe, df) in enumerate(by_recipe.items()):
            mc = mean_curve(df, metric)
            if mc.empty:
                continue
            n = int(df["trial_id"].nunique())
            c = _colour(recipe, i)
            ax.plot(mc["epoch"], mc["mean"], color=c, lw=1.8, label=f"{recipe} (n={n})", marker="o" if len(mc) < 12
                    else None, ms=3)
            band = mc.dropna(subset=["lo", "hi"])
            if len(band):
                lo, hi = band["lo"], band["hi"]
                lo, hi = _clip_band(metric, lo, hi)
                ax.fill_between(band["epoch"], lo, hi, color=c, alpha=0.2, lw=0)
            drawn = True
        fig_no = THESIS_FIGURES.get((mode, ds))
        ax.set_title(f"{ds}" + (f"  (thesis fig. {fig_no})" if fig_no else ""))
        if not drawn:
            no_data(ax, f"no {metric} recorded yet")
            continue
        if is_accuracy(metric):
            chance_line(ax, (chance or {}).get(ds))
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.set_ylabel(metric_label(metric))
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(title or f"{metric_label(metric)} vs epoch — {mode} (mean, 95% CI over seeds)")
    fig.tight_layout()
    return fig


def _clip_band(metric: str, lo, hi):
    """With 2–3 seeds a t band can leave the range the metric lives in (accuracies in [0, 100],
    cross-entropy losses ≥ 0) although the mean cannot; draw it within that range. The tables keep
    the unclipped interval."""
    if is_accuracy(metric):
        return lo.clip(0, 100), hi.clip(0, 100)
    if metric.startswith("loss"):
        return lo.clip(lower=0), hi
    return lo, hi


def _integer_epochs(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _ablation_axes_metrics(ab: Ablation, primary: str | None) -> list[str]:
    metrics = ab.metrics()
    wanted = ["final_test_top1", "final_knn_top1"]
    if primary and primary not in wanted:
        wanted.append(primary)
    return [m for m in wanted if m in metrics] or metrics[:1]


def ablation_figure(ab: Ablation, primary: str | None = None, as_bars: bool | None = None,
                    chance: Mapping[str, float] | None = None):
    """The metric against the swept value, one panel per metric, one line (or bar group) per
    dataset; error bars are 95% CIs over seeds; the default's value is marked; accuracy panels
    carry a chance line per dataset (chance: dataset → chance top-1 %)."""
    _style()
    metrics = _ablation_axes_metrics(ab, primary)
    fig, axes = _grid(max(1, len(metrics)), max_cols=3, size=(4.6, 3.4))
    if not metrics:
        no_data(axes[0], "no completed trials yet")
        axes[0].set_title(ab.key)
        fig.suptitle(f"ablation: {ab.key} (sweep {ab.sweep})")
        fig.tight_layout()
        return fig
    numeric = all(math.isfinite(numeric_value(v)) and not v.startswith("[") for v in ab.values)
    if as_bars is None:
        as_bars = not numeric
    datasets = ab.datasets
    palette = sns.color_palette(n_colors=max(1, len(datasets)))
    for ax, m in zip(axes, metrics):
        t = ab.table[ab.table["metric"] == m]
        if t.empty or t["mean"].notna().sum() == 0:
            no_data(ax)
            ax.set_title(metric_label(m))
            continue
        width = 0.8 / max(1, len(datasets))
        for j, ds in enumerate(datasets):
            d = t[t["dataset"] == ds].set_index("value").reindex(ab.values)
            mean = d["mean"].to_numpy(dtype=float)
            err = np.vstack([mean - d["lo"].to_numpy(dtype=float), d["hi"].to_numpy(dtype=float) - mean])
            err = np.where(np.isfinite(err), err, 0.0)  # no interval (n=1): draw the point alone
            if as_bars:
                x = np.arange(len(ab.values)) + (j - (len(datasets) - 1) / 2) * width
                ax.bar(x, np.nan_to_num(mean), width=width, yerr=err, color=palette[j], capsize=3,
                       label=ds, alpha=0.85)
                for xi, mi in zip(x, mean):
                    if not math.isfinite(mi):
                        ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=7, color="0.4")
            else:
                x = np.array([numeric_value(v) for v in ab.values])
                ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, color=palette[j], label=ds)
            if is_accuracy(m):
                c = (chance or {}).get(ds)
                if c is not None and math.isfinite(c):
                    ax.axhline(c, color=palette[j], ls=":", lw=1.2, label=f"chance {ds} ({c:.1f}%)")
        if as_bars:
            ax.set_xticks(np.arange(len(ab.values)))
            ax.set_xticklabels([v.strip("[]").replace(", ", "+") for v in ab.values], rotation=30, ha="right",
                               fontsize=8)
            if ab.default in ab.values:
                ax.get_xticklabels()[ab.values.index(ab.default)].set_fontweight("bold")
        else:
            if ab.default is not None and math.isfinite(numeric_value(ab.default)):
                ax.axvline(numeric_value(ab.default), color="0.5", ls="--", lw=1, label="default")
            if all(v > 0 for v in (numeric_value(x) for x in ab.values)) and _spread(ab.values) > 50:
                ax.set_xscale("log")
        ax.set_xlabel(ab.key)
        ax.set_ylabel(metric_label(m))
        ax.set_title(metric_label(m))
        if len(datasets) > 1 or not as_bars or (is_accuracy(m) and chance):
            ax.legend(fontsize="small")
    fig.suptitle(f"ablation: {ab.key} (sweep {ab.sweep}; mean, 95% CI over seeds)")
    fig.tight_layout()
    return fig


def _spread(values: Sequence[str]) -> float:
    x = [numeric_value(v) for v in values]
    x = [v for v in x if math.isfinite(v) and v > 0]
    return max(x) / min(x) if x else 1.0


def ablation_curves_figure(ab: Ablation, epochs: pd.DataFrame, metric: str = "loss_distill"):
    """Seed-mean curves of `metric` per swept value (e.g. the distillation loss for temperature
    ablations), one panel per dataset."""
    _style()
    datasets = ab.datasets or ["(none)"]
    fig, axes = _grid(len(datasets))
    done = ab.trials[ab.trials["status"] == "completed"]
    palette = sns.color_palette("viridis", n_colors=max(1, len(ab.values)))
    for ax, ds in zip(axes, datasets):
        drawn = False
        for i, v in enumerate(ab.values):
            ids = done.loc[(done["dataset"] == ds) & (done["value"] == v), "trial_id"]
            df = epochs[epochs["trial_id"].isin(ids)] if len(ids) and metric in epochs else pd.DataFrame()
            mc = mean_curve(df, metric) if not df.empty else pd.DataFrame()
            if mc.empty:
                continue
            ls = "-" if v == ab.default else "--"
            label = f"{v} (default)" if v == ab.default else v
            ax.plot(mc["epoch"], mc["mean"], color=palette[i], ls=ls, label=label)
            band = mc.dropna(subset=["lo", "hi"])
            if len(band):
                lo, hi = _clip_band(metric, band["lo"], band["hi"])
                ax.fill_between(band["epoch"], lo, hi, color=palette[i], alpha=0.15, lw=0)
            drawn = True
        ax.set_title(ds)
        if not drawn:
            no_data(ax)
            continue
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.set_ylabel(metric_label(metric))
        ax.legend(title=ab.key, fontsize="small")
    fig.suptitle(f"{metric_label(metric)} by {ab.key} (sweep {ab.sweep})")
    fig.tight_layout()
    return fig


def cd_diagram(ranking, title: str = ""):
    """Critical-difference diagram (Demšar 2006): arms on a mean-rank axis (1 = best, left), and a
    bar under every group whose mean ranks differ by less than the Nemenyi critical difference."""
    _style()
    k = ranking.k
    fig, ax = plt.subplots(figsize=(7.0, 1.4 + 0.3 * k))
    if k < 2 or not math.isfinite(ranking.cd):
        no_data(ax, "; ".join(ranking.notes) or "no ranking")
        ax.set_title(title)
        return fig
    names, ranks = list(ranking.mean_ranks.index), ranking.mean_ranks.to_numpy(dtype=float)
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.3, hi + 0.3)
    ax.set_ylim(-((k + 1) // 2) - 0.6, 1.6)
    ax.hlines(0, lo, hi, color="k", lw=1)
    for r in range(lo, hi + 1):
        ax.vlines(r, 0, 0.12, color="k", lw=1)
        ax.text(r, 0.22, str(r), ha="center", va="bottom", fontsize=8)
    half = (k + 1) // 2
    for i, (name, r) in enumerate(zip(names, ranks)):
        left = i < half
        depth = -(i + 1) if left else -(k - i)
        x_text = lo - 0.25 if left else hi + 0.25
        ax.plot([r, r, x_text], [0, depth, depth], color="k", lw=0.8)
        ax.text(x_text, depth, f"{name} ({r:.2f})", ha="right" if left else "left", va="center", fontsize=8)
    for j, group in enumerate(ranking.cliques()):
        rs = ranking.mean_ranks[group].to_numpy(dtype=float)
        y = -0.35 - 0.25 * j
        ax.hlines(y, rs.min() - 0.03, rs.max() + 0.03, color="k", lw=3)
    ax.hlines(1.2, lo, lo + ranking.cd, color="k", lw=1.5)
    ax.text(lo + ranking.cd / 2, 1.3, f"CD = {ranking.cd:.2f}", ha="center", va="bottom", fontsize=8)
    ax.axis("off")
    fig.suptitle(title or f"mean rank over {ranking.n_datasets} datasets (Friedman p = {ranking.p:.2g}; "
                 f"joined: not different by Nemenyi at α = {ranking.alpha:g})", fontsize=9)
    fig.tight_layout()
    return fig


def performance_profile_figure(profile: pd.DataFrame, title: str = ""):
    """rliable-style score distribution: fraction of runs above each normalised score τ, per arm,
    with its bootstrap band (where the seeds suffice for one)."""
    _style()
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    if profile.empty:
        no_data(ax, "no normalisable scores (chance unknown or no runs)")
        return fig
    for i, (arm, g) in enumerate(profile.groupby("arm", sort=False)):
        c = _colour(str(arm), i)
        ax.plot(g["tau"], g["fraction"], color=c, lw=1.8, label=str(arm))
        band = g.dropna(subset=["lo", "hi"])
        if len(band):
            ax.fill_between(band["tau"], band["lo"], band["hi"], color=c, alpha=0.2, lw=0)
    ax.set_xlabel("normalised score τ (0 = chance, 1 = 100% top-1)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small")
    bands = profile[["lo", "hi"]].notna().any(axis=None)
    ax.set_title((title or "performance profile") + ("" if bands else " (no bands: < 3 seeds per dataset)"),
                 fontsize=9)
    fig.tight_layout()
    return fig


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """Write `name`.png and `name`.svg; close the figure (reports make many)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=110 if ext == "png" else None, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths
