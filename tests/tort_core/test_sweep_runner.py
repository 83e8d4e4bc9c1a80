"""Sweeps on a real Ray Tune (CPU, with two *logical* GPUs), a real Parquet store and real offline
W&B: failures stay isolated, concurrent trials get different GPUs, a killed driver resumes
without recomputing or duplicating anything.

One Ray instance serves the whole module (start-up is the slow part); the subprocess sweeps
join it with --address, as a sweep on an existing cluster would.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tort_core.results import load_epochs, load_members, load_trials
from tort_core.sweep.runner import plan_sweep
from tort_core.trainer import MACHINE_METRICS

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TORT = str(Path(sys.executable).with_name("tort"))

# One epoch (three steps) of the demo recipe on a few digits: seconds per trial on one CPU.
TINY = {"epochs": 1, "optim.warmup_epochs": 0, "optim.cooldown_epochs": 0, "views.n_local": 2, "batch_size": 16,
        "data.train_limit": 48, "data.test_limit": 32, "data.eval_batch_size": 64}


@pytest.fixture(scope="module")
def ray_address():
    os.environ["RAY_DEDUP_LOGS"] = "0"
    import ray

    ctx = ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
                   logging_level=logging.WARNING)
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


def _write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _main(monkeypatch, capsys, argv):
    import cli

    monkeypatch.setattr(sys, "argv", ["tort", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


def test_failures_are_isolated_and_trials_get_their_own_gpu(ray_address, tmp_path, monkeypatch, capsys):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    spec = _write(tmp_path / "mixed.yaml", {
        "name": "mixed", "profile": "demo", "overrides": TINY, "retries": 1,
        # ok · non-finite loss (a real divergence at lr 1e6) · a trial that raises (unreadable init)
        "zip": [{"optim.lr": [0.002, 1.0e6, 0.002], "model.init": [None, None, str(garbage)]}],
    })
    results = tmp_path / "results"
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    code, out, err = _main(monkeypatch, capsys, ["sweep", str(spec), "--results", str(results), "--wandb"])
    assert code == 1, err  # some trials failed
    assert "failed" in out and "completed" in out and "Traceback" not in out

    trials = load_trials(results).set_index("model.init", drop=False)
    assert len(trials) == 3 and trials["trial_id"].is_unique
    ok = trials[trials["optim.lr"] == 0.002].dropna(subset=["final_test_top1"])
    assert list(ok["status"]) == ["completed"] and int(ok["epochs_done"].iloc[0]) == 1
    diverged = trials[trials["optim.lr"] == 1.0e6].iloc[0]
    assert diverged["status"] == "failed" and "non-finite loss" in diverged["error"]
    raised = trials.loc[str(garbage)]
    # an unreadable init file is deterministic: the trial fails at once, not once per retry
    assert raised["status"] == "failed" and "model.init" in raised["error"] and raised["attempts"] == 1
    # provenance on every row
    for col in ("sweep", "trial_id", "seed", "loss.teacher_temp", "views.mask_scale", "git.commit",
                "version.torch", "version.ray", "hw.host", "hw.device", "wall_seconds", "samples_per_s"):
        assert col in trials.columns, col

    epochs = pd.read_sql_query("SELECT * FROM epochs", sqlite3.connect(results / "store.sqlite"))  # plain pandas
    assert len(epochs) == 1 and epochs["trial_id"].iloc[0] == ok["trial_id"].iloc[0]
    assert {"loss", "loss_distill", "test_top1", "knn_top1", "lr", "epoch"} <= set(epochs.columns)
    assert "optim.lr" not in epochs.columns and int(ok["num_classes"].iloc[0]) == 10  # config: once per trial

    # GPU placement: each trial asked for one of the two logical GPUs; trials that ran at the same
    # time saw different CUDA_VISIBLE_DEVICES, and none tried to use CUDA (there is none here).
    assert set(trials["hw.gpus"]) == {1.0} and set(trials["hw.device"]) == {"cpu"}
    # (a retried trial's hw.* describe its last attempt, so its span starts at that attempt)
    spans = [(datetime.fromisoformat(r["hw.started_at"]), datetime.fromisoformat(r["finished_at"]),
              r["hw.cuda_visible_devices"]) for r in trials.to_dict("records")]
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, spans
    assert all(a[2] != b[2] for a, b in overlapping) and {s[2] for s in spans} <= {"0", "1"}

    # W&B: one offline run per trial, under the results dir
    runs = sorted((results / "wandb").glob("offline-run-*"))
    assert len(runs) == 3 and {r.name.rsplit("-", 1)[1] for r in runs} == set(trials["trial_id"])
    assert all(any(f.suffix == ".wandb" and f.stat().st_size > 0 for f in r.iterdir()) for r in runs)

    # Never twice: the completed trial is skipped by this sweep and by any other that contains it.
    again = plan_sweep(spec, results_dir=results)
    assert [t.id for t in again.skipped] == list(ok["trial_id"]) and len(again.to_run) == 2
    other = _write(tmp_path / "other.yaml", {"name": "other", "profile": "demo", "overrides": TINY,
                                             "axes": {"optim.lr": [0.002, 0.003]}})
    plan = plan_sweep(other, results_dir=results)
    assert [t.id for t in plan.skipped] == list(ok["trial_id"]) and len(plan.to_run) == 1
    assert set(load_members(results)["sweep"]) == {"mixed"}


# Checkpoints by the background writer, as trials on a GPU write them: started in a Ray worker, and
# killed with it.
# The second trial is longer, so that the kill (once the first is complete in the store and the
# second has checkpointed an epoch) lands inside it even when the driver lags behind its workers.
KILL_SPEC = {"name": "killed", "profile": "demo",
             "overrides": {**{k: v for k, v in TINY.items() if k != "epochs"}, "checkpoint_write": "background"},
             "max_concurrent": 1, "zip": [{"loss.teacher_temp": [0.04, 0.05], "epochs": [3, 10]}]}


def test_a_killed_driver_resumes_only_the_missing_trials(ray_address, tmp_path, monkeypatch, capsys):
    spec = _write(tmp_path / "killed.yaml", KILL_SPEC)
    results = tmp_path / "results"
    cmd = [TORT, "sweep", str(spec), "--results", str(results), "--no-wandb", "--address", ray_address]
    log = open(tmp_path / "first.log", "w")
    driver = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        # kill once the first trial is complete and the second has checkpointed an epoch
        while time.monotonic() < deadline and driver.poll() is None:
            rows = load_trials(results)
            done = int((rows["status"] == "completed").sum()) if "status" in rows.columns else 0
            run_dirs = list((results / "runs").glob("*/checkpoint.pt")) if results.exists() else []
            if done >= 1 and len(run_dirs) >= 2:
                break
            time.sleep(0.2)
        assert driver.poll() is None, (tmp_path / "first.log").read_text()
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()

    assert list(load_trials(results)["status"].value_counts().sort_index().items()) == [("completed", 1),
                                                                                         ("running", 1)]
    plan = plan_sweep(spec, results_dir=results)
    # the completed trial is skipped; the other resumes from its checkpoint
    assert len(plan.skipped) == 1 and [t.id for t in plan.to_run] == list(plan.partial)
    # without --resume the interrupted sweep is not silently restarted
    code, _, err = _main(monkeypatch, capsys, ["sweep", str(spec), "--results", str(results), "--no-wandb"])
    assert code == 2 and "--resume" in err

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = load_trials(results)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"} and trials["trial_id"].is_unique
    # the resumed trial says it was interrupted, and when it first started
    resumed_row = trials.set_index("trial_id").loc[plan.to_run[0].id]
    assert (resumed_row["attempts"], resumed_row["interruptions"]) == (2, 1)
    assert resumed_row["started_at"] < resumed_row["hw.started_at"]
    epochs = load_epochs(results)
    assert len(epochs) == 13 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(sorted).map(tuple)) == [(1, 2, 3), tuple(range(1, 11))]
    assert "1 skipped" in resumed.stdout and "1 completed" in resumed.stdout
    assert not (results / ".running" / "killed.json").exists()
    assert not list((results / "runs").rglob("*.tmp"))  # no write killed midway was left behind
    members = load_members(results)
    assert len(members) == 2 and json.loads(members["axes"].iloc[0]) == {"loss.teacher_temp": 0.04, "epochs": 3}


def test_a_reused_worker_computes_what_a_fresh_one_does(ray_address, tmp_path):
    """Tune runs the next trial in the same worker process (reuse_actors): torch is not imported
    again and the dataset comes from the process's cache, but the trial's numbers are exactly
    those of the same trial in a fresh process."""
    from tort_core.sweep.runner import multi_node, run_sweep

    common = {"profile": "demo", "overrides": TINY, "max_concurrent": 1}
    # A sota trial first (other RNG draws, other model), then the tort trial on the same worker.
    reused = _write(tmp_path / "reused.yaml", {"name": "reused", **common, "axes": {"recipe": ["sota", "tort"]}})
    out = run_sweep(reused, results_dir=tmp_path / "a", wandb=False, progress=False)
    assert out.counts() == {"completed": 2}
    assert out.timing["ray_init_seconds"] >= 0 and out.timing["tune_seconds"] > 0
    first = load_trials(tmp_path / "a").set_index("recipe")
    assert first.loc["tort", "hw.pid"] == first.loc["sota", "hw.pid"]  # one worker process ran both ...
    assert list(first.loc[["sota", "tort"], "timing.process_trial"]) == [1, 2]  # ... the tort trial second
    assert first.loc["tort", "timing.data_seconds"] >= 0 and first.loc["tort", "timing.build_seconds"] > 0

    fresh = _write(tmp_path / "fresh.yaml", {"name": "fresh", **common, "recipe": "tort"})
    run_sweep(fresh, results_dir=tmp_path / "b", wandb=False, progress=False)
    second = load_trials(tmp_path / "b").set_index("recipe")
    assert second.loc["tort", "trial_id"] == first.loc["tort", "trial_id"]
    assert second.loc["tort", "timing.process_trial"] == 1 and second.loc["tort", "hw.pid"] != first.loc["tort", "hw.pid"]

    tid = second.loc["tort", "trial_id"]
    a, b = [(e := load_epochs(tmp_path / d))[e["trial_id"] == tid].set_index("epoch") for d in ("a", "b")]
    metrics = [c for c in a.columns if c in set(b.columns)
               and c not in MACHINE_METRICS and pd.api.types.is_numeric_dtype(a[c])
               and (c.startswith(("loss", "test_", "knn_", "train_top1", "teacher_")) or c in ("lr", "momentum", "grad_norm", "step"))]
    assert {"loss", "loss_distill", "test_top1", "knn_top1", "lr", "grad_norm"} <= set(metrics)
    pd.testing.assert_frame_equal(a[metrics], b[metrics], check_exact=True)

    # One node: the trials' own checkpoints are the resume points, Tune makes no copies of them.
    assert not multi_node()
    assert not list((tmp_path / "a" / "ray").rglob("checkpoint_*"))
