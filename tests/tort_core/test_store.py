"""The Parquet results store (tort_core.store): keyed upserts (a row is never stored twice), one readable file per
table, and no torn file even when the writer is killed mid-write."""

from __future__ import annotations

import pytest
import json
import signal
import subprocess
import sys
import time

import pandas as pd

from tort_core.store import (EPOCHS_TABLE, MEMBERS_TABLE, TRIALS_TABLE, ResultStore, load_epochs, load_members,
                             load_trials)


def _epoch(tid: str, epoch: int, **extra) -> dict:
    return {"sweep": "s", "trial_id": tid, "epoch": epoch, "loss": 1.0 / epoch, "seed": 0, **extra}


def test_upserts_replace_by_key_and_unify_columns(tmp_path):
    store = ResultStore(tmp_path)
    store.upsert(EPOCHS_TABLE, [_epoch("a", 1), _epoch("a", 2)])
    store.upsert(EPOCHS_TABLE, [_epoch("a", 2, loss_region=0.5), _epoch("b", 1, **{"model.init": "/x.pt"})])
    df = pd.read_parquet(tmp_path / "epochs")  # plain pandas reads the table's folder
    assert len(df) == 3 and not df.duplicated(["trial_id", "epoch"]).any()
    assert df.set_index(["trial_id", "epoch"]).loc[("a", 2), "loss_region"] == 0.5
    # columns whose values mix types are stored as text rather than failing the write
    store.upsert(TRIALS_TABLE, [{"trial_id": "a", "status": "completed", "error": None, "x": 1.5},
                                {"trial_id": "b", "status": "failed", "error": "boom", "x": "n/a"}])
    store.upsert(TRIALS_TABLE, [{"trial_id": "a", "status": "completed", "error": None, "x": 2.0}])
    trials = pd.read_parquet(tmp_path / "trials")
    assert sorted(trials["trial_id"]) == ["a", "b"] and store.statuses() == {"a": "completed", "b": "failed"}
    store.forget(["a"])
    assert set(load_epochs(tmp_path)["trial_id"]) == {"b"} and set(load_trials(tmp_path)["trial_id"]) == {"b"}


def test_sweep_membership_filters_shared_trials(tmp_path):
    store = ResultStore(tmp_path)
    store.upsert(TRIALS_TABLE, [{"trial_id": "t1", "sweep": "first", "status": "completed"},
                                {"trial_id": "t2", "sweep": "first", "status": "completed"}])
    store.upsert(EPOCHS_TABLE, [_epoch("t1", 1, sweep="first"), _epoch("t2", 1, sweep="first")])
    store.upsert(MEMBERS_TABLE, [{"sweep": "first", "trial_id": "t1", "axes": "{}"},
                                 {"sweep": "first", "trial_id": "t2", "axes": "{}"},
                                 {"sweep": "second", "trial_id": "t1", "axes": "{}"}])
    second = load_trials(tmp_path, sweep="second")
    assert list(second["trial_id"]) == ["t1"] and list(second["sweep"]) == ["second"]
    assert json.loads(load_trials(tmp_path).set_index("trial_id").loc["t1", "sweeps"]) == ["first", "second"]
    assert list(load_epochs(tmp_path, sweep="second")["trial_id"]) == ["t1"]
    assert len(load_members(tmp_path)) == 3
    assert load_epochs(tmp_path / "empty").empty and load_trials(tmp_path / "empty").empty


def test_results_module_exports_the_store_readers():
    import tort_core.results as results

    assert results.load_epochs is load_epochs and results.load_trials is load_trials


WRITER = """
import sys
from tort_core.store import EPOCHS_TABLE, ResultStore
store = ResultStore(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    i += 1
    store.upsert(EPOCHS_TABLE, [{"trial_id": f"t{i % 7}", "epoch": i, "loss": float(i), "pad": "x" * 2000}])
"""


@pytest.mark.slow
def test_a_writer_killed_mid_write_never_leaves_a_broken_table(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not (tmp_path / "epochs" / "epochs.parquet").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # a few hundred rewrites: the kill lands inside one of them
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    df = pd.read_parquet(tmp_path / "epochs")
    assert len(df) > 10 and not df.duplicated(["trial_id", "epoch"]).any()
    # a temp file the killed writer may have left is invisible to readers and cleared by the next write
    (tmp_path / "epochs" / ".epochs.parquet.dead.tmp").write_bytes(b"PAR1 torn")
    assert len(pd.read_parquet(tmp_path / "epochs")) == len(df)
    ResultStore(tmp_path).upsert(EPOCHS_TABLE, [{"trial_id": "z", "epoch": 1, "loss": 0.0}])
    assert not list((tmp_path / "epochs").glob(".*.tmp"))
    assert len(load_epochs(tmp_path)) == len(df) + 1
