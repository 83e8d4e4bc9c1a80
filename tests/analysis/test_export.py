"""A store exported as Parquet (`tort export`) is a results folder the analysis reads like the store."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from analysis.load import load_store
from synthetic_store import comparison_specs, make_frames
from tort_core.store import (DB_FILE, EPOCHS_TABLE, MEMBERS_TABLE, TRIALS_TABLE, ResultStore, export_parquet,
                             is_export, read_export)


def _write_store(root, specs):
    epochs, trials = make_frames(specs)
    store = ResultStore(root)
    config = [c for c in trials.columns if c not in ("trial_id", "epoch") and c in epochs.columns]
    store.bulk_insert(EPOCHS_TABLE, epochs.drop(columns=config))  # the store keeps configs in trials only
    store.bulk_insert(TRIALS_TABLE, trials.drop(columns=["sweeps"]))
    store.bulk_insert(MEMBERS_TABLE, pd.DataFrame({"sweep": trials["sweep"], "trial_id": trials["trial_id"],
                                                   "axes": trials["axes"]}))
    store.close()
    return trials


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    import cli

    monkeypatch.setattr(sys, "argv", ["tort", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def test_an_export_loads_as_the_store_it_came_from(tmp_path):
    _write_store(tmp_path / "r", comparison_specs(datasets=("digits", "flowers102")))
    export_parquet(tmp_path / "r", tmp_path / "x")
    assert is_export(tmp_path / "x") and not is_export(tmp_path / "r")
    a, b = load_store(tmp_path / "r"), load_store(tmp_path / "x")
    for name in ("trials", "epochs", "members"):
        fa, fb = getattr(a, name), getattr(b, name)
        pd.testing.assert_frame_equal(fa.reset_index(drop=True), fb[fa.columns].reset_index(drop=True),
                                      check_dtype=False, obj=name)
    assert len(a.trials) == 12 and a.sweeps() == b.sweeps() == ["compare-demo"]


def test_portable_export_keeps_no_machine_paths(tmp_path):
    root = tmp_path / "r"
    _write_store(root, comparison_specs(datasets=("digits",), seeds=(0,)))
    store = ResultStore(root)
    tid = store.read(TRIALS_TABLE)["trial_id"].iloc[0]
    store.upsert(TRIALS_TABLE, [{"trial_id": tid, "data.root": "/home/someone/data/flowers17",
                                 "error_file": "/tmp/ray/session_1/error.txt",
                                 "error": "cannot decode /home/someone/data/flowers17/train/a/x.jpg: truncated; "
                                          "see 3/4 of a/b"}])
    store.close()
    export_parquet(root, tmp_path / "plain")
    export_parquet(root, tmp_path / "portable", portable=True)
    assert "/home/someone" in json.dumps(read_export(tmp_path / "plain")[TRIALS_TABLE].astype(str).values.tolist())
    row = read_export(tmp_path / "portable")[TRIALS_TABLE].set_index("trial_id").loc[tid]
    assert row["data.root"] == "flowers17" and row["error_file"] == "error.txt"
    assert row["error"] == "cannot decode x.jpg: truncated; see 3/4 of a/b"  # relative text left alone
    assert not any("/home/" in str(v) or "/tmp/" in str(v)
                   for v in read_export(tmp_path / "portable")[TRIALS_TABLE].to_numpy().ravel())


@pytest.mark.slow
def test_tort_report_reads_an_export_with_the_same_tables(tmp_path, monkeypatch, capsys):
    _write_store(tmp_path / "r", comparison_specs(datasets=("digits", "flowers102")))
    code, out, err = _cli(monkeypatch, capsys, "export", "--results", str(tmp_path / "r"), "--out",
                          str(tmp_path / "x"), "--portable")
    assert code == 0 and "trials.parquet" in out, err
    assert not (tmp_path / "x" / DB_FILE).exists()
    for src, dst in (("r", "rep_r"), ("x", "rep_x")):
        code, out, err = _cli(monkeypatch, capsys, "report", "--results", str(tmp_path / src), "--out",
                              str(tmp_path / dst))
        assert code == 0, err
    tables = sorted(p.name for p in (tmp_path / "rep_r" / "tables").glob("*.csv"))
    assert tables and tables == sorted(p.name for p in (tmp_path / "rep_x" / "tables").glob("*.csv"))
    for name in tables:
        assert (tmp_path / "rep_r" / "tables" / name).read_text() == (tmp_path / "rep_x" / "tables" / name).read_text()


def test_export_refuses_a_folder_without_a_store(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _cli(monkeypatch, capsys, "export", "--results", str(tmp_path / "empty"), "--out",
                        str(tmp_path / "x"))
    assert code == 2 and "no results store" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
