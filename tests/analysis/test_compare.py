"""analysis.compare on synthetic stores whose answers are known by construction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis.compare import compare, comparison_markdown, display_tables, hardware_check, write_comparison
from analysis.errors import AnalysisError
from analysis.load import Store

ROOT = Path(__file__).resolve().parents[2]


def test_clear_advantage_is_significant_on_the_primary_test(comparison_store):
    cmp = compare(comparison_store)
    t = cmp.table[cmp.table.metric == "final_test_top1"]
    assert len(t) == 3 and (t["role"] == "primary").all() and (t["welch_p_holm"] < 0.05).all()
    assert (cmp.table.loc[cmp.table.metric != "final_test_top1", "role"] == "secondary").all()
    assert (t["diff_mean"] > 20).all() and (t["diff_lo"] > 15).all()
    assert (t["p_improvement"] == 1.0).all() and (t["hedges_g"] > 3).all()
    # three seeds each: Mann–Whitney cannot go below 2/C(6,3) = 0.1, and the table says so
    np.testing.assert_allclose(t[["mw_p", "mw_min_p"]].to_numpy(dtype=float), 0.1)
    assert "best_test_top1" not in set(cmp.table.metric)  # selection on the test set is never tested


def test_the_displayed_difference_is_welchs_interval(comparison_store):
    cmp = compare(comparison_store)
    row = cmp.table[(cmp.table.metric == "final_test_top1") & (cmp.table.dataset == "digits")].iloc[0]
    t = comparison_store.completed()
    t = t[t.dataset == "digits"]
    a = t.loc[t.recipe == "sota", "final_test_top1"].to_numpy()
    b = t.loc[t.recipe == "tort", "final_test_top1"].to_numpy()
    ci = st.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert row["diff_lo"] == pytest.approx(ci.low) and row["diff_hi"] == pytest.approx(ci.high)
    md = comparison_markdown(cmp)
    assert f"[{ci.low:.2f}, {ci.high:.2f}]" in md and "Δ [95% Welch CI]" in md
    assert "primary (Welch t)" in md and "floor 0.1" in md


def test_holm_family_is_the_datasets_of_one_metric(comparison_store):
    cmp = compare(comparison_store)
    for _, g in cmp.table.groupby("metric"):
        smallest = g["welch_p"].idxmin()  # Holm multiplies the smallest of 3 p-values by 3
        assert g.loc[smallest, "welch_p_holm"] == pytest.approx(min(1.0, 3 * g.loc[smallest, "welch_p"]))


def test_same_recipe_twice_shows_no_difference(frames, specs):
    same = {"plateau": 30.0, "tau": 3.0, "sec": 7.0, "sps": 150.0, "noise": 2.0}
    store = Store.from_frames(*frames(specs(seeds=(0, 1, 2, 3), tort=same, sota=same), seed=5))
    cmp = compare(store)
    assert not (cmp.table["welch_p_holm"] < 0.05).any()
    assert (cmp.table["diff_mean"].abs() < 5).all()
    tm = cmp.time.iloc[0]
    assert tm["seconds_per_epoch_speedup_lo"] < 1.0 < tm["seconds_per_epoch_speedup_hi"]


def test_convergence_speedup_has_an_interval_only_above_chance(comparison_store):
    cmp = compare(comparison_store)
    conv = cmp.convergence.set_index("dataset")
    # digits: chance 10%, sota plateau ~14 → target ~12%: reaching it measures nothing
    assert np.isnan(conv.loc["digits", "speedup"])
    assert "too close to chance (10.0%)" in conv.loc["digits", "speedup_why"]
    fl = conv.loc["flowers102"]  # chance ~1%: target ~11% is meaningful; tort reaches it 5–7× sooner
    assert fl["speedup"] > 2 and fl["speedup_lo"] < fl["speedup"] < fl["speedup_hi"]
    assert (cmp.time["seconds_per_epoch_speedup"].between(1.8, 2.2)).all()  # 10 s vs 5 s per epoch
    assert (cmp.time["samples_per_s_speedup"].between(1.8, 2.2)).all()


def test_time_ratios_only_on_the_same_hardware(frames, specs):
    ep, tr = frames(specs(datasets=("digits",), seeds=(0, 1)))
    tr.loc[tr.recipe == "tort", "hw.device"] = "cuda"
    cmp = compare(Store.from_frames(ep, tr))
    row = cmp.time.iloc[0]
    assert np.isnan(row["seconds_per_epoch_speedup"]) and "hw.device: cpu, cuda" in row["time_why"]
    assert "different hardware" in comparison_markdown(cmp)
    bare = tr.drop(columns=[c for c in tr if c.startswith("hw.")])
    assert hardware_check(bare, bare).startswith("hardware not recorded")
    assert hardware_check(tr[tr.recipe == "sota"], tr[tr.recipe == "sota"]) == ""


def test_across_datasets_normalises_by_fixed_references(comparison_store):
    cmp = compare(comparison_store)
    row = cmp.across[cmp.across.metric == "final_test_top1"].iloc[0]
    assert row["datasets"] == 3 and row["wilcoxon_p"] == pytest.approx(0.25)
    assert row["wilcoxon_min_p"] == pytest.approx(0.25) and "impossible" in row["notes"]
    t = comparison_store.completed()
    chance = {"digits": 10.0, "flowers102": 100 / 102, "oxford_pet": 100 / 37}
    norm = [(x - chance[d]) / (100 - chance[d]) for d, x in zip(t.dataset, t.final_test_top1)]
    t = t.assign(norm=norm)
    assert row["iqm_method"] == pytest.approx(st.trim_mean(t.loc[t.recipe == "tort", "norm"], 0.25))
    assert row["iqm_baseline"] == pytest.approx(st.trim_mean(t.loc[t.recipe == "sota", "norm"], 0.25))
    assert row["iqm_diff_lo"] > 0.2  # plateaus 40 vs 15 points: a clear gap, with both arms resampled
    assert row["p_improvement"] == 1.0 and "every resample" in row["p_improvement_why"]


def test_failed_runs_are_counted_and_can_be_scored_as_chance(frames, specs):
    sp = specs(datasets=("flowers102",), seeds=(0, 1, 2, 3))
    sp[0] = {**sp[0], "status": "failed", "upto": 2}  # tort seed 0 diverged
    store = Store.from_frames(*frames(sp))
    cmp = compare(store)
    runs = cmp.runs.set_index("recipe")
    assert runs.loc["tort", ["started", "completed", "failed"]].tolist() == [4, 3, 1]
    assert runs.loc["tort", "failure_rate"] == pytest.approx(0.25) and runs.loc["sota", "failure_rate"] == 0
    assert cmp.table.iloc[0]["n_method"] == 3
    chanced = compare(store, failed_as_chance=True)
    row = chanced.table[chanced.table.metric == "final_test_top1"].iloc[0]
    survivors = store.completed()
    survivors = survivors.loc[survivors.recipe == "tort", "final_test_top1"]
    assert row["n_method"] == 4
    assert row["method_mean"] == pytest.approx((survivors.sum() + 100 / 102) / 4)
    assert "scored as chance" in " ".join(display_tables(chanced)[0].notes)


def test_a_run_whose_last_epoch_is_not_finite_is_failed(frames, specs):
    ep, tr = frames(specs(datasets=("digits",), seeds=(0, 1, 2)))
    tid = tr.loc[tr.recipe == "tort", "trial_id"].iloc[0]
    last = ep[ep.trial_id == tid].epoch.max()
    ep.loc[(ep.trial_id == tid) & (ep.epoch == last), ["loss", "test_top1"]] = np.nan
    store = Store.from_frames(ep, tr)
    row = store.trials.set_index("trial_id").loc[tid]
    assert row["status"] == "failed" and np.isnan(row["final_test_top1"]) and "loss" in row["error"]
    assert compare(store).runs.set_index("recipe").loc["tort", "failed"] == 1


def test_baseline_interval_including_chance_is_flagged(comparison_store):
    tables = {t.title.split(" — ")[0]: t for t in display_tables(compare(comparison_store))}
    assert tables["digits"].title == "digits — scratch (chance 10.00%)"
    assert any("includes chance (10.00%)" in n for n in tables["digits"].notes)
    assert not any("includes chance" in n for n in tables["flowers102"].notes)


def test_unfinished_trials_are_left_out_and_reported(frames, specs):
    sp = specs(datasets=("digits",), seeds=(0, 1, 2))
    sp[0] = {**sp[0], "upto": 2}  # tort seed 0 still running
    cmp = compare(Store.from_frames(*frames(sp)))
    rec = cmp.recipes.set_index("recipe")
    assert rec.loc["tort", "seeds"] == 2 and rec.loc["sota", "seeds"] == 3
    assert cmp.runs.set_index("recipe").loc["tort", "running"] == 1
    assert any("running" in n for n in cmp.notes)


def test_requested_dataset_without_trials_gives_nan_not_zero(comparison_store):
    cmp = compare(comparison_store, datasets=["digits", "stanford_cars"])
    cars = cmp.table[cmp.table.dataset == "stanford_cars"]
    assert len(cars) == 2 and cars["method_mean"].isna().all() and cars["welch_p"].isna().all()
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


def test_settings_say_what_is_compared(frames, specs):
    sp = specs(datasets=("digits",), seeds=(0, 1), tort={"overrides": {"loss.teacher_temp": 0.06}})
    cmp = compare(Store.from_frames(*frames(sp)))
    s = dict(cmp.settings)
    assert s["profile"] == "demo" and s["mode"] == "scratch" and s["model"] == "vit_tiny_patch16_224"
    assert "tort: loss.teacher_temp=0.06" in s["overrides"] and "sota: none" in s["overrides"]


def test_tables_render_and_write(tmp_path, comparison_store):
    cmp = compare(comparison_store)
    titles = [t.title for t in display_tables(cmp)]
    assert titles == ["runs per arm", "digits — scratch (chance 10.00%)", "flowers102 — scratch (chance 0.98%)",
                      "oxford_pet — scratch (chance 2.70%)", "across datasets"]
    paths = write_comparison(cmp, tmp_path)
    names = {p.name for p in paths}
    assert {"compare.md", "compare_table.csv", "compare_runs.csv", "compare_across.csv"} <= names
    md = (tmp_path / "compare.md").read_text()
    assert "| final test top-1 (%) — primary (Welch t) |" in md and "epochs to" in md
    assert "× speed per epoch (tort, >1 faster)" in md and "smallest Δ detectable (80% power)" in md
    table = pd.read_csv(tmp_path / "compare_table.csv")
    assert {"role", "mw_min_p", "mde80", "chance", "diff_why"} <= set(table.columns)


@pytest.mark.slow
def test_analysis_imports_neither_torch_nor_ray():
    code = ("import sys; import analysis.load, analysis.stats, analysis.across, analysis.compare, analysis.claims, "
            "analysis.ablations, analysis.metrics, analysis.power, analysis.health, analysis.reference, "
            "analysis.settings, analysis.simulation, analysis.plots, analysis.report; "
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stderr


def test_validation_selected_accuracy_is_a_labelled_secondary_row(frames, specs):
    ep, tr = frames(specs(datasets=("digits",), seeds=(0, 1)))
    ep["val_top1"] = ep["test_top1"] + 1.0
    cmp = compare(Store.from_frames(ep, tr))
    row = cmp.table.set_index("metric").loc["valsel_test_top1"]
    assert row["role"] == "secondary"
    assert "test top-1 (%) at the best-val_top1 epoch (validation-selected) — secondary" in comparison_markdown(cmp)


@pytest.mark.slow
def test_tort_report_imports_neither_torch_nor_timm(tmp_path):
    """The report reads the store and the profiles' default values; none of that needs torch
    (≈ 0.7 GB of memory and seconds of import) — timm's names are not checked there."""
    from synthetic_store import comparison_specs, make_frames

    epochs, trials = make_frames(comparison_specs(datasets=("digits",), seeds=(0, 1)))
    results = tmp_path / "results"
    for table, df in (("epochs", epochs), ("trials", trials)):
        (results / table).mkdir(parents=True)
        df.to_parquet(results / table / f"{table}.parquet", index=False)
    code = ("import sys, cli; sys.argv = ['tort', 'report', '--results', sys.argv[1], '--out', sys.argv[2]]\n"
            "try:\n    cli.main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(sorted(m for m in ('torch', 'timm', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(results), str(tmp_path / "report")], cwd=ROOT,
                         capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
    assert (tmp_path / "report" / "index.html").exists()
