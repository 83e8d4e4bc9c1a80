"""analysis.plots: the figures have the panels, lines and bands they should, and save as files."""

from __future__ import annotations

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import PolyCollection

from analysis import plots
from analysis.ablations import find_ablations
from analysis.load import Store


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _curves(store, datasets):
    t = store.trials
    return {ds: {r: store.curves(t.loc[(t.dataset == ds) & (t.recipe == r), "trial_id"]) for r in ("tort", "sota")}
            for ds in datasets}


def test_curve_figure_one_panel_per_dataset_with_mean_and_band(comparison_store):
    fig = plots.curve_figure(_curves(comparison_store, ["digits", "flowers102", "oxford_pet"]), "test_top1")
    axes = fig.get_axes()
    assert len(axes) == 3
    assert [ax.get_title() for ax in axes] == ["digits", "flowers102  (thesis fig. 4.1)", "oxford_pet  (thesis fig. 4.4)"]
    for ax in axes:
        assert len(ax.get_lines()) == 2  # one mean line per recipe
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # one CI band each
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["tort (n=3)", "sota (n=3)"]
        assert ax.get_lines()[0].get_color() == plots.RECIPE_COLOURS["tort"]


def test_curve_figure_says_when_a_panel_has_no_data(comparison_store):
    curves = _curves(comparison_store, ["digits"])
    curves["stanford_cars"] = {"tort": comparison_store.curves([]), "sota": comparison_store.curves([])}
    fig = plots.curve_figure(curves, "test_top1", mode="finetune")
    empty = fig.get_axes()[1]
    assert empty.get_title() == "stanford_cars  (thesis fig. 4.7)"
    assert not empty.get_lines() and "no test_top1 recorded" in empty.texts[0].get_text()


def test_ablation_figure_numeric_and_bar_variants(frames):
    specs = [{"recipe": "tort", "dataset": "digits", "seed": s, "sweep": "tt", "overrides": {"loss.teacher_temp": v},
              "axes": {"loss.teacher_temp": v}} for v in (0.02, 0.04, 0.06) for s in (0, 1)]
    specs += [{"recipe": "tort", "dataset": "digits", "seed": s, "sweep": "subsets", "overrides": {"loss.enabled": v},
               "axes": {"loss.enabled": v}} for v in (["distill"], ["distill", "rotation"]) for s in (0, 1)]
    abl = {a.sweep: a for a in find_ablations(Store.from_frames(*frames(specs)))}
    fig = plots.ablation_figure(abl["tt"], primary="distill_settling_epoch")
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["final test top-1 (%)", "final k-NN top-1 (%)",
                                               "epoch the distillation loss made 90% of its drop"]
    xs = sorted(axes[0].get_lines()[0].get_xdata())  # the errorbar line, against the numeric value
    assert xs == pytest.approx([0.02, 0.04, 0.06])
    fig2 = plots.ablation_figure(abl["subsets"], as_bars=True, chance={"digits": 10.0})
    ax = fig2.get_axes()[0]
    assert len(ax.patches) == 2 and [t.get_text() for t in ax.get_xticklabels()] == ["distill", "distill+rotation"]
    assert [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":"] == [10.0]  # bars: chance too


def test_accuracy_panels_carry_a_chance_line(comparison_store):
    chance = {"digits": 10.0, "flowers102": 100 / 102}
    fig = plots.curve_figure(_curves(comparison_store, ["digits", "flowers102"]), "test_top1", chance=chance)
    for ax, c in zip(fig.get_axes(), chance.values()):
        dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
        assert len(dotted) == 1 and dotted[0].get_ydata()[0] == pytest.approx(c)
        assert f"chance ({c:.1f}%)" in [t.get_text() for t in ax.get_legend().get_texts()]
    loss = plots.curve_figure(_curves(comparison_store, ["digits"]), "loss_distill", chance=chance)
    assert not [ln for ln in loss.get_axes()[0].get_lines() if ln.get_linestyle() == ":"]  # not an accuracy


def test_cd_diagram_draws_ranks_and_joins_groups():
    import pandas as pd

    from analysis.across import friedman_nemenyi

    table = pd.DataFrame({"tort": [40, 30, 50, 20, 35], "sota": [20, 10, 30, 5, 15], "deit": [21, 12, 29, 6, 16]})
    fig = plots.cd_diagram(friedman_nemenyi(table))
    texts = [t.get_text() for t in fig.get_axes()[0].texts]
    assert "tort (1.00)" in texts and "deit (2.20)" in texts and "sota (2.80)" in texts
    assert any(t.startswith("CD = 1.48") for t in texts)


def test_performance_profile_figure_has_a_curve_per_arm():
    from analysis.across import performance_profile

    prof = performance_profile({"sota": {"a": [0.1, 0.2, 0.15]}, "tort": {"a": [0.4, 0.5, 0.45]}},
                               [0.0, 0.25, 0.5, 1.0])
    ax = plots.performance_profile_figure(prof).get_axes()[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["sota", "tort"]
    assert "chance" in ax.get_xlabel()


def test_save_writes_png_and_svg(tmp_path, comparison_store):
    fig = plots.curve_figure(_curves(comparison_store, ["digits", "flowers102"]), "knn_top1")
    paths = plots.save(fig, tmp_path, "curves")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    h, w = mpimg.imread(paths[0]).shape[:2]
    assert w > h > 200 and w > 600  # two panels side by side
    assert "<svg" in paths[1].read_text()[:500]
