"""analysis.compare on synthetic stores whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import stats
from analysis.compare import compare, comparison_markdown, display_tables, write_comparison
from analysis.errors import AnalysisError
from analysis.load import Store


def test_clear_advantage_is_significant_everywhere(comparison_store):
    cmp = compare(comparison_store)
    t = cmp.table[cmp.table.metric == "final_test_top1"]
    assert len(t) == 3 and (t["welch_p_holm"] < 0.05).all()
    assert (t["diff_mean"] > 20).all() and (t["diff_lo"] > 15).all()
    assert (t["p_improvement"] == 1.0).all() and (t["hedges_g"] > 3).all()
    # three seeds each: Mann–Whitney cannot go below 2/C(6,3) = 0.1, and the table says so
    np.testing.assert_allclose(t[["mw_p", "mw_min_p"]].to_numpy(dtype=float), 0.1)


def test_holm_is_applied_per_metric_over_datasets(comparison_store):
    cmp = compare(comparison_store)
    for metric, g in cmp.table.groupby("metric"):
        adj, _ = stats.holm(g["welch_p"].to_numpy())
        np.testing.assert_allclose(g["welch_p_holm"].to_numpy(), adj)


def test_same_recipe_twice_shows_no_difference(frames, specs):
    same = {"plateau": 30.0, "tau": 3.0, "sec": 7.0, "sps": 150.0, "noise": 2.0}
    store = Store.from_frames(*frames(specs(seeds=(0, 1, 2, 3), tort=same, sota=same), seed=5))
    cmp = compare(store)
    assert not (cmp.table["welch_p_holm"] < 0.05).any()
    assert (cmp.table["diff_mean"].abs() < 5).all()
    tm = cmp.time.iloc[0]
    assert tm["seconds_per_epoch_speedup_lo"] < 1.0 < tm["seconds_per_epoch_speedup_hi"] * 1.01


def test_convergence_and_time_ratios(comparison_store):
    cmp = compare(comparison_store)
    conv = cmp.convergence[cmp.convergence.recipe == "tort"]
    assert (conv["speedup"] > 2).all()  # tau 2 vs 4 and a far higher plateau
    assert (cmp.time["seconds_per_epoch_speedup"].between(1.8, 2.2)).all()  # 10 s vs 5 s per epoch
    assert (cmp.time["samples_per_s_speedup"].between(1.8, 2.2)).all()


def test_across_datasets_wilcoxon_says_three_datasets_cannot_be_significant(comparison_store):
    cmp = compare(comparison_store)
    row = cmp.across[cmp.across.metric == "final_test_top1"].iloc[0]
    assert row["datasets"] == 3 and row["wilcoxon_p"] == pytest.approx(0.25)
    assert row["wilcoxon_min_p"] == pytest.approx(0.25) and "impossible" in row["notes"]
    # plateaus 40 vs 15: normalised IQM near 40/15 ≈ 2.7; the baseline's own near 1
    assert 2.2 < row["iqm_method"] < 3.3 and row["iqm_method_lo"] <= row["iqm_method"] <= row["iqm_method_hi"]
    assert 0.9 < row["iqm_baseline"] < 1.1


def test_unfinished_trials_are_left_out_and_reported(frames, specs):
    sp = specs(datasets=("digits",), seeds=(0, 1, 2))
    sp[0] = {**sp[0], "upto": 2}  # tort seed 0 still running
    cmp = compare(Store.from_frames(*frames(sp)))
    rec = cmp.recipes.set_index("recipe")
    assert rec.loc["tort", "seeds"] == 2 and rec.loc["sota", "seeds"] == 3
    assert any("running" in n for n in cmp.notes)


def test_requested_dataset_without_trials_gives_nan_not_zero(comparison_store):
    cmp = compare(comparison_store, datasets=["digits", "stanford_cars"])
    cars = cmp.table[cmp.table.dataset == "stanford_cars"]
    assert len(cars) == 4 and cars["method_mean"].isna().all() and cars["welch_p"].isna().all()
    assert any("stanford_cars" in n for n in cmp.notes)
    assert "n/a" in comparison_markdown(cmp)


def test_unknown_recipe_and_same_recipe_are_errors(comparison_store):
    with pytest.raises(AnalysisError, match="unknown recipe 'tortt'"):
        compare(comparison_store, method="tortt")
    with pytest.raises(AnalysisError):
        compare(comparison_store, baseline="tort", method="tort")


def test_several_configurations_pick_one_and_say_so(frames, specs):
    sp = specs(datasets=("digits",), seeds=(0, 1))
    sp += [{"recipe": "tort", "dataset": "digits", "seed": 0, "sweep": "tt",
            "overrides": {"loss.teacher_temp": 0.02}}]
    cmp = compare(Store.from_frames(*frames(sp)))
    assert cmp.recipes.set_index("recipe").loc["tort", "seeds"] == 2
    assert any("configurations" in n for n in cmp.notes)


def test_tables_render_and_write(tmp_path, comparison_store):
    cmp = compare(comparison_store)
    titles = [t for t, _ in display_tables(cmp)]
    assert titles == ["digits — scratch", "flowers102 — scratch", "oxford_pet — scratch", "across datasets"]
    paths = write_comparison(cmp, tmp_path)
    names = {p.name for p in paths}
    assert {"compare.md", "compare_table.csv", "compare_across.csv"} <= names
    md = (tmp_path / "compare.md").read_text()
    assert "| final top-1 |" in md and "epochs to" in md and "× speed per epoch (>1: tort faster)" in md
    assert all(p.stat().st_size > 0 for p in paths)
