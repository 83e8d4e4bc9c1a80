"""`tort train` against what goes wrong on a real machine: damaged checkpoints, a kill between two
writes, a full disk, a read-only output folder, and flags that contradict each other."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cli_runner import TINY_ARGS, assert_one_line_error, run_main, run_tort


def _one_error_line(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished run: its checkpoint, metrics and summary (trained once for the module)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    proc = run_tort("train", *TINY_ARGS, "--set", "epochs=3", "--out", run)
    assert proc.returncode == 0, proc.stderr
    return run


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_damaged_checkpoint_is_named_with_how_to_start_over(finished_run, tmp_path, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    ckpt = run / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 64}[damage])
    proc = run_tort("train", *TINY_ARGS, "--set", "epochs=3", "--out", run)
    assert_one_line_error(proc, "checkpoint.pt", "--no-resume")
    fresh = run_tort("train", *TINY_ARGS, "--set", "epochs=3", "--out", run, "--no-resume")
    assert fresh.returncode == 0 and "completed 3 epochs" in fresh.stdout, fresh.stderr


@pytest.mark.slow
def test_a_kill_between_checkpoint_and_metrics_leaves_no_gap_after_resume(finished_run, tmp_path):
    """The checkpoint of epoch 2 landed, the metrics file still ended at epoch 1 (killed between the
    two writes): the resumed run's file and summary follow the checkpoint."""
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["epoch"], state["records"] = 1, state["records"][:2]  # as written after epoch 2 of 3
    state["global_step"] = state["records"][-1]["step"]
    torch.save(state, run / "checkpoint.pt")
    metrics = pd.read_parquet(run / "metrics.parquet")
    metrics[metrics["epoch"] == 1].to_parquet(run / "metrics.parquet")  # killed before epoch 2's row
    proc = run_tort("train", *TINY_ARGS, "--set", "epochs=3", "--out", run)
    assert proc.returncode == 0 and "resumed after epoch 2" in proc.stdout, proc.stderr
    assert list(pd.read_parquet(run / "metrics.parquet")["epoch"]) == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3


@pytest.mark.slow
def test_a_finished_run_says_it_was_already_complete(finished_run):
    proc = run_tort("train", *TINY_ARGS, "--set", "epochs=3", "--out", finished_run)
    assert proc.returncode == 0 and proc.stdout.startswith("already complete: 3 epochs"), proc.stdout


@pytest.mark.slow
def test_a_full_disk_fails_with_one_line_leaves_no_partial_file_and_resumes_after(tiny_disk):
    import subprocess

    run = tiny_disk / "run"
    proc = run_tort("train", *TINY_ARGS, "--out", run)
    assert_one_line_error(proc, "No space left on device", "run the command again")
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    again = run_tort("train", *TINY_ARGS, "--out", run)
    assert again.returncode == 0 and "completed 1 epochs" in again.stdout, again.stderr


def test_a_read_only_output_folder_fails_before_training(readonly_dir, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "train", *TINY_ARGS, "--out", readonly_dir / "run")
    _one_error_line(code, err, "--out", "cannot write there")


def test_an_output_path_under_a_file_fails_before_training(tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("x")
    code, _, err = run_main(monkeypatch, capsys, "train", *TINY_ARGS, "--out", tmp_path / "a_file" / "run")
    _one_error_line(code, err, "--out", "cannot write there")


def test_a_data_root_for_an_embedded_dataset_is_an_error_not_ignored(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, "train", *TINY_ARGS, "--data-root", tmp_path)
    _one_error_line(code, err, "--data-root", "'digits' is embedded", "file-based dataset")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("args, fragment", [
    (["--epochs", "1", "--set", "epochs=3"], "epochs is given twice, --epochs 1 and --set epochs=3"),
    (["--seed", "1", "--set", "seed=3"], "seed is given twice"),
    (["--threads", "1", "--set", "threads=2"], "threads is given twice"),
])
def test_a_flag_and_a_set_that_disagree_are_an_error(tmp_path, monkeypatch, capsys, command, args, fragment):
    if command == "compare" and "--epochs" not in args:
        pytest.skip("tort compare has no --seed or --threads")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, command, "--profile", "demo", *args)
    _one_error_line(code, err, fragment)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("args", [["compare", "--seeds", "1"], ["sweep", "SPEC", "--dry-run"]])
def test_a_data_root_for_embedded_data_is_an_error_in_sweeps_and_comparisons(tmp_path, monkeypatch, capsys, args):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nprofile: demo\n")
    monkeypatch.chdir(tmp_path)
    args = [str(spec) if a == "SPEC" else a for a in args]
    code, _, err = run_main(monkeypatch, capsys, *args, "--profile", "demo", "--data-root" if args[0] == "compare"
                            else "--set", tmp_path if args[0] == "compare" else f"data.root={tmp_path}")
    _one_error_line(code, err, "data root is set but 'digits' is embedded")
    assert not (tmp_path / "results").exists()


def test_threads_default_to_the_free_cores_less_the_loader_workers(monkeypatch):
    import os

    from tort_core.trainer import default_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_threads(0) == 2 and default_threads(1) == 1 and default_threads(4) == 1
