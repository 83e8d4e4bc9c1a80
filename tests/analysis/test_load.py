"""analysis.load: normalising the store's tables, trial status, provenance."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.errors import AnalysisError, ResultsNotFound
from analysis.load import Store, arm_ids, dataset_label, load_store, provenance, value_label, varying_keys
from tort_core.errors import TortError


def test_missing_results_dir_is_a_one_line_tort_error(tmp_path):
    with pytest.raises(ResultsNotFound) as err:
        load_store(tmp_path / "nope")
    assert isinstance(err.value, TortError) and "\n" not in str(err.value) and "nope" in str(err.value)


def test_final_and_best_come_from_the_epochs(frames):
    ep, tr = frames([{"recipe": "tort", "seed": 0, "epochs": 5}])
    tr["final_test_top1"] = 999.0  # a stale summary value must not win over the recorded epochs
    s = Store.from_frames(ep, tr)
    row = s.trials.iloc[0]
    assert row["final_test_top1"] == pytest.approx(ep["test_top1"].iloc[-1])
    assert row["best_test_top1"] == pytest.approx(ep["test_top1"].max())
    assert row["best_loss_distill"] == pytest.approx(ep["loss_distill"].min())  # losses: best = lowest
    assert row["epochs_done"] == 5 and row["status"] == "completed"


def test_trial_without_summary_row_is_running_and_not_completed(frames):
    ep, tr = frames([{"recipe": "tort", "seed": 0}, {"recipe": "tort", "seed": 1, "upto": 3}])
    s = Store.from_frames(ep, tr)
    assert sorted(s.trials["status"]) == ["completed", "running"]
    assert len(s.completed()) == 1


def test_synonym_columns_and_duplicate_epochs(frames):
    ep, tr = frames([{"recipe": "sota", "seed": 3, "epochs": 4}])
    ep = pd.concat([ep, ep.tail(1).assign(test_top1=77.0)])  # a resumed trial re-wrote its last epoch
    ep = ep.rename(columns={"sweep": "sweep_name", "trial_id": "config_id"}).drop(columns="sweeps")
    tr = tr.rename(columns={"sweep": "sweep_name", "trial_id": "config_id"}).drop(columns="sweeps")
    s = Store.from_frames(ep, tr)
    assert {"sweep", "trial_id", "dataset"} <= set(s.trials.columns)
    assert len(s.epochs) == 4 and s.trials.iloc[0]["final_test_top1"] == 77.0


def test_imagefolder_datasets_are_told_apart_by_their_folder():
    assert dataset_label("imagefolder", "/data/flowers17") == "imagefolder:flowers17"
    assert dataset_label("flowers102", "/data/x") == "flowers102"


def test_epochs_without_id_column_is_an_analysis_error():
    with pytest.raises(AnalysisError):
        Store.from_frames(pd.DataFrame({"epoch": [1], "test_top1": [3.0]}))


def test_arms_ignore_seed_and_varying_keys_see_the_sweep(frames):
    ep, tr = frames([{"recipe": "tort", "seed": 0, "overrides": {"loss.teacher_temp": 0.02}},
                     {"recipe": "tort", "seed": 1, "overrides": {"loss.teacher_temp": 0.02}},
                     {"recipe": "tort", "seed": 0, "overrides": {"loss.teacher_temp": 0.06}}])
    s = Store.from_frames(ep, tr)
    arms = arm_ids(s.trials)
    assert arms.iloc[0] == arms.iloc[1] != arms.iloc[2]
    assert varying_keys(s.trials) == ["loss.teacher_temp"]


def test_value_label_is_canonical():
    assert value_label(6) == value_label(6.0) == "6"
    assert value_label("[0.4, 0.6]") == value_label([0.4, 0.6]) == "[0.4, 0.6]"
    assert value_label('["distill", "rotation"]') == "[distill, rotation]"
    assert value_label(math.nan) == value_label(None) == "null"


def test_provenance_lists_environment_seeds_and_failures(frames):
    ep, tr = frames([{"recipe": "tort", "seed": 0}, {"recipe": "tort", "seed": 1, "status": "failed", "upto": 2}])
    prov = provenance(Store.from_frames(ep, tr))
    assert prov["trials"] == 2 and prov["seeds"] == [0, 1]
    assert prov["status_counts"] == {"completed": 1, "failed": 1}
    assert prov["environment"]["git.commit"] == {"abc1234": 2} and "version.torch" in prov["environment"]
    assert len(prov["failed"]) == 1 and prov["failed"][0]["error"] == "non-finite loss"


def test_a_trial_shared_by_two_sweeps_belongs_to_both(frames):
    ep, tr = frames([{"recipe": "tort", "seed": 0, "sweep": "compare", "axes": {"recipe": "tort"}},
                     {"recipe": "tort", "seed": 0, "sweep": "teacher_temp", "axes": {"loss.teacher_temp": 0.04}},
                     {"recipe": "tort", "seed": 0, "sweep": "teacher_temp",
                      "overrides": {"loss.teacher_temp": 0.02}}])
    s = Store.from_frames(ep, tr)
    assert len(s.trials) == 2 and s.sweeps() == ["compare", "teacher_temp"]
    assert len(s.sweep_trials("teacher_temp")) == 2 and len(s.sweep_trials("compare")) == 1
    assert s.sweep_axes("teacher_temp") == ["loss.teacher_temp"]


def test_planned_trials_without_rows_are_pending(frames):
    ep, tr = frames([{"recipe": "tort", "seed": 0, "sweep": "x"}])
    members = pd.DataFrame({"sweep": ["x", "x"], "trial_id": [tr["trial_id"].iloc[0], "not-started"],
                            "axes": ["{}", "{}"]})
    s = Store.from_frames(ep, tr, members=members)
    assert s.sweep_pending("x") == 1 and len(s.sweep_trials("x")) == 1


def test_final_is_the_last_epoch_and_a_non_finite_end_fails_the_run(frames):
    ep, tr = frames([{"recipe": "tort", "seed": 0, "epochs": 5}, {"recipe": "tort", "seed": 1, "epochs": 5}])
    bad = tr["trial_id"].iloc[1]
    ep.loc[(ep.trial_id == bad) & (ep.epoch == 5), ["loss", "loss_distill"]] = float("inf")
    ep.loc[(ep.trial_id == bad) & (ep.epoch == 5), "test_top1"] = float("nan")
    s = Store.from_frames(ep, tr).trials.set_index("trial_id")
    assert s.loc[bad, "status"] == "failed" and "loss" in s.loc[bad, "error"] and "test_top1" in s.loc[bad, "error"]
    assert math.isnan(s.loc[bad, "final_test_top1"])  # never the last finite epoch's value
    assert s.loc[bad, "best_test_top1"] == pytest.approx(ep.loc[ep.trial_id == bad, "test_top1"].max())
    good = tr["trial_id"].iloc[0]
    assert s.loc[good, "status"] == "completed" and s.loc[good, "nonfinite_at_end"] == ""


def test_validation_selected_test_accuracy(frames):
    ep, tr = frames([{"recipe": "tort", "seed": 0, "epochs": 4}])
    ep["val_top1"] = [10.0, 30.0, 20.0, 30.0]  # best at epoch 2 (the first of the tied maxima)
    row = Store.from_frames(ep, tr).trials.iloc[0]
    assert row["valsel_epoch"] == 2 and row["valsel_test_top1"] == pytest.approx(ep["test_top1"].iloc[1])
    assert row["valsel_knn_top1"] == pytest.approx(ep["knn_top1"].iloc[1])
