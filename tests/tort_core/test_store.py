"""The results store (tort_core.store): claims that keep two drivers off one trial, records written
once, consistent reads while a driver writes, a killed writer that loses nothing committed, and
stores of Parquet files written before the database, read as they are and imported once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tort_core.store import (EPOCHS_TABLE, LEGACY_DIR, MEMBERS_TABLE, TRIALS_TABLE, ClaimLost, Owner, ResultStore,
                             export_parquet, load_epochs, load_members, load_trials, read_table,
                             write_parquet_atomic)

LEGACY = Path(__file__).parent / "data" / "legacy_store"  # written by the Parquet store's own code
DONE = {"completed"}


def _trial(tid: str, **cols) -> dict:
    return {"trial_id": tid, "sweep": "first", "seed": 0, "loss.teacher_temp": 0.04, "views.teacher_rotated": True,
            **cols}


def _epoch(epoch: int, **extra) -> dict:
    return {"epoch": epoch, "loss": 1.0 / epoch, "test_top1": 10.0 * epoch, **extra}


def test_a_trial_is_claimed_once_and_its_records_are_written_once(tmp_path):
    store = ResultStore(tmp_path, lease=30)
    a, b = Owner.new("first"), Owner.new("second")
    got = store.claim([_trial("t1"), _trial("t2")], a, DONE)
    assert got.claimed == ["t1", "t2"]
    other = store.claim([_trial("t1", sweep="second", seed=9)], b, DONE)
    assert other.claimed == [] and "sweep 'first'" in other.held["t1"]

    assert store.add_epochs("t1", [_epoch(1), _epoch(2)], a) == 2
    # a replay of epochs already stored adds only what is new, and rewrites nothing
    assert store.add_epochs("t1", [_epoch(2, loss=99.0), _epoch(3, loss_region=0.5)], a) == 1
    with pytest.raises(ClaimLost):
        store.add_epochs("t1", [_epoch(4)], b)
    store.update_trial("t1", {"status": "completed", "sweep": "hijack", "started_at": "never", "hw.host": "n1"}, a,
                       release=True)

    epochs = load_epochs(tmp_path)
    assert list(epochs["epoch"]) == [1, 2, 3] and epochs.loc[1, "loss"] == 0.5
    assert set(epochs.columns) == {"trial_id", "epoch", "loss", "test_top1", "loss_region"}  # metrics only
    trials = load_trials(tmp_path).set_index("trial_id")
    assert trials.loc["t1", "sweep"] == "first" and trials.loc["t1", "started_at"] != "never"
    assert trials.loc["t1", "hw.host"] == "n1" and trials.loc["t1", "status"] == "completed"
    assert trials.loc["t1", "views.teacher_rotated"] is True or trials.loc["t1", "views.teacher_rotated"] == True  # noqa: E712
    assert store.statuses() == {"t1": "completed", "t2": "running"}
    # a finished trial is not claimed again, by anyone
    assert store.claim([_trial("t1")], b, DONE).done == ["t1"]


def test_an_expired_lease_hands_the_trial_over_and_records_the_interruption(tmp_path):
    store = ResultStore(tmp_path, lease=0.2)
    dead, alive = Owner.new("first"), Owner.new("second")
    store.claim([_trial("t1")], dead, DONE)
    store.add_epochs("t1", [_epoch(1)], dead)
    first = load_trials(tmp_path).iloc[0]
    time.sleep(0.3)  # the first driver died: no heartbeat
    got = ResultStore(tmp_path, lease=30).claim([_trial("t1", sweep="second")], alive, DONE)
    assert got.claimed == ["t1"]
    row = load_trials(tmp_path).iloc[0]
    assert (row["attempts"], row["interruptions"], row["status"]) == (2, 1, "running")
    assert row["started_at"] == first["started_at"] and row["sweep"] == "first"
    with pytest.raises(ClaimLost):  # the first driver, back from the dead, writes nothing
        store.add_epochs("t1", [_epoch(2)], dead)


def test_a_claim_of_a_dead_process_on_this_machine_is_taken_over_at_once(tmp_path):
    import socket

    store = ResultStore(tmp_path, lease=600)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = Owner(f"{socket.gethostname()}:x", socket.gethostname(), int(proc.stdout), "first")
    store.claim([_trial("t1")], killed, DONE)
    me = Owner.new("second")
    assert store.claim([_trial("t1")], me, DONE).claimed == ["t1"]
    assert store.holders() == {"t1": me.id}
    row = load_trials(tmp_path).iloc[0]
    assert (row["attempts"], row["interruptions"]) == (2, 1)


CLAIMER = """
import sys, time
from tort_core.store import Owner, ResultStore
store = ResultStore(sys.argv[1], lease=60)
owner = Owner.new(sys.argv[2])
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
got = []
for tid in [f"t{i:03d}" for i in range(60)]:  # one claim at a time: the two interleave
    got += store.claim([{"trial_id": tid, "sweep": sys.argv[2]}], owner, {"completed"}).claimed
print(" ".join(got))
"""


@pytest.mark.slow
def test_two_drivers_started_at_once_claim_disjoint_trials(tmp_path):
    start = str(time.time() + 1.5)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(tmp_path), name, start], stdout=subprocess.PIPE,
                              text=True) for name in ("one", "two")]
    outs = [set(p.communicate(timeout=120)[0].split()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert not outs[0] & outs[1] and len(outs[0] | outs[1]) == 60
    trials = load_trials(tmp_path)
    assert len(trials) == 60 and set(trials["attempts"]) == {1}


WRITER = """
import sys
from tort_core.store import Owner, ResultStore
store = ResultStore(sys.argv[1], lease=600)
owner = Owner.new("w")
store.claim([{"trial_id": f"t{k}"} for k in range(7)], owner, {"completed"})
print("ready", flush=True)
i = 0
while True:
    i += 1
    store.add_epochs(f"t{i % 7}", [{"epoch": i, "loss": float(i), "pad": "x" * 2000}], owner)
    store.update_trial(f"t{i % 7}", {"epochs_done": i}, owner)
"""


@pytest.mark.slow
def test_readers_see_whole_commits_and_a_killed_writer_loses_nothing_committed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        seen = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # a reader beside the writer: never a half-written state
            frames = ResultStore(tmp_path).read_all()
            epochs, trials = frames[EPOCHS_TABLE], frames[TRIALS_TABLE]
            seen.append(len(epochs))
            if not epochs.empty:
                assert not epochs.duplicated(["trial_id", "epoch"]).any()
                done = trials["epochs_done"].max() if "epochs_done" in trials else 0  # (not before the first update)
                assert epochs["epoch"].max() >= done  # one snapshot, both tables
        assert seen == sorted(seen) and seen[-1] > 10
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    con = sqlite3.connect(tmp_path / "store.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    df = pd.read_sql_query("SELECT * FROM epochs", con)  # plain pandas reads it
    assert len(df) >= seen[-1] and sorted(df["epoch"]) == list(range(1, len(df) + 1))


def test_a_store_written_before_the_database_is_read_as_it_is_and_imported_once(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(LEGACY, results)
    before_trials, before_epochs = load_trials(results), load_epochs(results)
    assert len(before_trials) == 2 and len(before_epochs) == 5 and "loss.teacher_temp" in before_epochs.columns
    assert set(read_table(results, MEMBERS_TABLE)["sweep"]) == {"legacy"}

    store = ResultStore(results)
    owner = Owner.new("next")
    got = store.claim([{"trial_id": "f00dfeedbeef"}, {"trial_id": before_trials["trial_id"].iloc[0]}], owner, DONE)
    assert got.claimed == ["f00dfeedbeef"] and got.done == [before_trials["trial_id"].iloc[0]]
    assert not (results / "epochs" / "epochs.parquet").exists()
    assert (results / LEGACY_DIR / "epochs" / "epochs.parquet").exists()

    trials = load_trials(results).set_index("trial_id")
    assert len(trials) == 3 and trials.loc["f00dfeedbeef", "loss.teacher_temp"] == 0.07
    # the trial whose driver was killed resumes as an interrupted one
    assert (trials.loc["f00dfeedbeef", "attempts"], trials.loc["f00dfeedbeef", "interruptions"]) == (2, 1)
    for tid, row in before_trials.set_index("trial_id").iterrows():
        for col in ("status", "final_test_top1", "sweep", "started_at", "loss.teacher_temp", "hw.host"):
            assert trials.loc[tid, col] == row[col], col
    epochs = load_epochs(results)
    assert len(epochs) == 5 and "loss.teacher_temp" not in epochs.columns
    pd.testing.assert_series_equal(epochs.sort_values(["trial_id", "epoch"])["test_top1"].reset_index(drop=True),
                                   before_epochs.sort_values(["trial_id", "epoch"])["test_top1"].reset_index(drop=True),
                                   check_names=False)
    assert len(load_members(results)) == 2
    assert len(load_trials(results, sweep="legacy")) == 3  # the killed trial's epochs named its sweep


def test_upsert_members_and_sweep_filters(tmp_path):
    store = ResultStore(tmp_path)
    store.upsert(TRIALS_TABLE, [{"trial_id": "t1", "sweep": "first", "status": "completed", "x": 1.5},
                                {"trial_id": "t2", "sweep": "first", "status": "failed", "x": "n/a"}])
    store.upsert(TRIALS_TABLE, [{"trial_id": "t1", "x": 2.0}])
    store.add_members([{"sweep": "first", "trial_id": "t1", "axes": "{}"},
                       {"sweep": "first", "trial_id": "t2", "axes": "{}"},
                       {"sweep": "second", "trial_id": "t1", "axes": "{}"}])
    store.add_members([{"sweep": "second", "trial_id": "t1", "axes": "{\"changed\": 1}"}])  # kept as first written
    trials = load_trials(tmp_path).set_index("trial_id")
    assert trials.loc["t1", "x"] == 2.0 and trials.loc["t1", "status"] == "completed"
    assert json.loads(trials.loc["t1", "sweeps"]) == ["first", "second"]
    assert list(load_trials(tmp_path, sweep="second").index) == [0] and len(load_members(tmp_path)) == 3
    assert load_members(tmp_path).set_index(["sweep", "trial_id"]).loc[("second", "t1"), "axes"] == "{}"
    store.forget(["t1"])
    assert list(load_trials(tmp_path)["trial_id"]) == ["t2"]
    assert load_epochs(tmp_path / "empty").empty and load_trials(tmp_path / "empty").empty
    assert not (tmp_path / "empty").exists()  # reading creates nothing
    paths = export_parquet(tmp_path, tmp_path / "export")
    assert len(pd.read_parquet(paths[TRIALS_TABLE])) == 1


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_parquet_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
        ResultStore(tmp_path / "r").upsert(TRIALS_TABLE, [{"trial_id": "t"}])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o666 & ~umask
    for name in ("store.sqlite", "store.sqlite-wal"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o666 & ~umask, name


def test_results_module_exports_the_store_readers():
    import tort_core.results as results

    assert results.load_epochs is load_epochs and results.load_trials is load_trials


READ_AND_CLOSE = """
import sys
from tort_core.store import ResultStore
ResultStore(sys.argv[1]).read_all()
"""
COUNT_EPOCHS = """
import sys
from tort_core.store import read_table
print(len(read_table(sys.argv[1], "epochs")))
"""


def test_a_reader_in_another_process_never_takes_the_log_from_under_a_driver(tmp_path):
    # SQLite's locks are POSIX locks, which a process loses on *any* close of the database file. A
    # second connection of the driver (its heartbeat thread's) must not close the file behind the
    # first one's back: a reader (`tort report`, `tort export`) that then closed last would take
    # the driver's write-ahead log with it, and every later epoch would go to a deleted file.
    import threading

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    store, owner = ResultStore(tmp_path), Owner.new("driver")
    store.claim([_trial("t0")], owner, DONE)
    store.add_epochs("t0", [{"epoch": 1, "loss": 1.0}], owner)
    second = ResultStore(tmp_path)
    beat = threading.Thread(target=second.heartbeat, args=(owner,))
    beat.start()
    beat.join()
    subprocess.run([sys.executable, "-c", READ_AND_CLOSE, str(tmp_path)], check=True, env=env)
    store.add_epochs("t0", [{"epoch": 2, "loss": 0.5}], owner)
    seen = subprocess.run([sys.executable, "-c", COUNT_EPOCHS, str(tmp_path)], check=True, env=env,
                          capture_output=True, text=True).stdout.split()
    assert seen == ["2"]
    assert (tmp_path / "store.sqlite-wal").exists()
