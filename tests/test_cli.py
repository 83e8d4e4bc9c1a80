"""The `tort` command line as a user runs it: a real subprocess (bad-input cases through cli.main)."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from tiny_config import TINY_SETS


def tort(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=_env())


def _env():
    import os
    from pathlib import Path

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_train_demo_end_to_end_writes_parquet(tmp_path):
    sets = [a for s in TINY_SETS for a in ("--set", s)]
    run = tmp_path / "run"
    proc = tort("train", "--profile", "demo", "--out", str(run), "--no-progress", *sets)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_parquet(run / "metrics.parquet")
    assert list(df["epoch"]) == [1, 2, 3]
    assert {"loss", "loss_distill", "loss_supervised", "loss_rotation", "test_top1", "knn_top1", "lr", "momentum",
            "samples_per_s", "epoch_seconds", "peak_mem_mb", "teacher_entropy", "config_id", "recipe"} <= set(df.columns)
    assert df["test_top1"].between(0, 100).all() and (df["samples_per_s"] > 0).all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 3
    assert (run / "checkpoint.pt").exists() and (run / "config.yaml").exists()
    assert "completed 3 epochs" in proc.stdout
    # Running it again finds the finished checkpoint and trains nothing more.
    again = tort("train", "--profile", "demo", "--out", str(run), "--no-progress", *sets)
    assert again.returncode == 0 and len(pd.read_parquet(run / "metrics.parquet")) == 3


@pytest.mark.parametrize("args, fragment", [
    (["train", "--recipe", "tortt"], "unknown recipe 'tortt'"),
    (["train", "--profile", "demo", "--dataset", "flowerz"], "data.dataset"),
    (["train", "--profile", "demo", "--model", "vit_nope"], "model.name"),
    (["train", "--profile", "demo", "--set", "loss.teacher_tmp=0.1"], "did you mean 'loss.teacher_temp'"),
    (["train", "--profile", "demo", "--dataset", "imagefolder", "--data-root", "/nonexistent/root"],
     "not a directory"),
    (["train", "--dataset", "flowers102"], "needs a local root"),
    (["train", "--profile", "demo", "--mode", "finetune", "--init", "/nonexistent.pt"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, args, fragment, monkeypatch, capsys):
    # In this process (cli.main, as the entry point calls it): a subprocess per case would spend its
    # seconds importing torch. The installed command's own exit is checked below.
    import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["tort", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing was written


@pytest.mark.slow
def test_the_installed_command_exits_2_on_bad_input(tmp_path):
    proc = tort("train", "--profile", "demo", "--set", "optim.name=adamx", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "optim.name: unknown timm optimizer 'adamx'" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_config_prints_the_resolved_yaml_and_keys(monkeypatch, capsys):
    proc = tort("config", "--profile", "demo", "--set", "loss.enabled=[distill,rotation]")
    assert proc.returncode == 0 and "- distill" in proc.stdout and "global_size: 32" in proc.stdout
    import cli

    monkeypatch.setattr(sys, "argv", ["tort", "config", "--keys"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    keys = capsys.readouterr().out.split()
    assert exc.value.code == 0 and "loss.teacher_temp" in keys and "views.mask_scale" in keys and "optim.fused" in keys


def test_train_says_when_the_teacher_ended_near_uniform(capsys):
    import math

    import cli

    cli._note_collapse({"teacher_entropy": 0.99 * math.log(256)}, 256)
    note = capsys.readouterr().err
    assert "near the uniform distribution" in note and "5.55" in note
    for final in ({"teacher_entropy": 0.9 * math.log(256)}, {"teacher_entropy": float("nan")}, {}):
        cli._note_collapse(final, 256)  # a teacher that learned, or a recipe without one: nothing
        assert capsys.readouterr().err == ""
