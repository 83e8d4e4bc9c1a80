"""A sweep against a full disk and a damaged checkpoint, and what it prints where there is no
terminal (a cluster job's log)."""

from __future__ import annotations

import io
import subprocess

import pytest
from rich.console import Console

from cli_runner import assert_one_line_error, run_tort

SPEC = """name: tiny
profile: demo
overrides: {epochs: 2, optim.warmup_epochs: 0, optim.cooldown_epochs: 0, views.n_local: 2, batch_size: 16,
            data.train_limit: 64, data.test_limit: 32}
seeds: 2
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_full_disk_stops_the_sweep_with_one_line_and_resume_completes_it(tiny_disk, tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.replace("seeds: 2", "seeds: 1"))
    results = tiny_disk / "results"
    subprocess.run(["mount", "-o", "remount,size=3m", str(tiny_disk)], check=True)
    proc = run_tort("sweep", spec, "--results", results, "--no-wandb", "--no-progress", cwd=tmp_path)
    assert_one_line_error(proc, "No space left on device", "--resume")
    subprocess.run(["mount", "-o", "remount,size=256m", str(tiny_disk)], check=True)
    again = run_tort("sweep", spec, "--results", results, "--no-wandb", "--no-progress", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "1 completed" in again.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_a_damaged_checkpoint_restarts_its_trial_instead_of_failing_every_resume(tmp_path):
    from tort_core.sweep import plan_sweep

    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.replace("seeds: 2", "seeds: 1"))
    results = tmp_path / "results"
    (trial,) = plan_sweep(spec, results_dir=results).trials
    run_dir = results / "runs" / trial.id
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"cut short by a full disk")
    proc = run_tort("sweep", spec, "--results", results, "--no-wandb", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 completed" in proc.stdout
    assert (run_dir / "checkpoint.pt.corrupt").read_bytes() == b"cut short by a full disk"


@pytest.mark.slow
@pytest.mark.ray
def test_without_address_a_sweep_runs_on_a_ray_of_its_own(tmp_path):
    """Not on whatever cluster RAY_ADDRESS (or another process's Ray on this machine) names."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.replace("seeds: 2", "seeds: 1"))
    proc = run_tort("sweep", spec, "--results", tmp_path / "results", "--no-wandb", "--no-progress", cwd=tmp_path,
                    env={"RAY_ADDRESS": "127.0.0.1:9"})  # nothing listens there
    assert proc.returncode == 0, proc.stderr
    assert "1 completed" in proc.stdout


def _display(lines: bool, clock):
    from tort_core.sweep.display import SweepDisplay

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=80)
    display = SweepDisplay("s", [("t1", "seed=0 digits", 3), ("t2", "seed=1 digits", 3)], max_concurrent=1,
                           console=console, live=True, lines=lines, clock=clock)
    return display, buf


def test_without_a_terminal_each_start_epoch_and_end_is_a_line():
    now = [0.0]
    display, buf = _display(lines=None, clock=lambda: now[0])  # a StringIO is not a terminal
    display.start()
    display.trial_started("t1")
    now[0] = 10.0
    display.epoch("t1", {"epoch": 1, "test_top1": 12.5, "epoch_seconds": 10.0})
    display.trial_finished("t1", "completed")
    display.stop()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "started t1 seed=0 digits" in lines[0] and lines[0].startswith("[00:00] s:")
    assert "t1 epoch 1/3, test top-1 12.50%, 00:10" in lines[1] and "ETA" in lines[1]
    assert "completed t1" in lines[2] and lines[2].startswith("[00:10]")


def test_the_eta_counts_down_between_epochs():
    now = [0.0]
    display, _ = _display(lines=False, clock=lambda: now[0])
    display.trial_started("t1")
    now[0] = 10.0
    display.epoch("t1", {"epoch": 1, "epoch_seconds": 10.0})
    first = display.eta()  # 2 epochs of t1 + 3 of t2, 10 s each, one at a time
    now[0] = 16.0
    later = display.eta()
    assert first == pytest.approx(50.0) and later == pytest.approx(44.0)
    elapsed = [display.render().renderables[1].plain for _ in range(1)]
    assert "elapsed 00:16" in elapsed[0]
