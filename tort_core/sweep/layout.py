"""Where a sweep keeps its files under the results directory (no Ray, no torch).

    <results>/runs/<trial_id>/     a trial's run directory: config.yaml, checkpoint.pt, .lock
    <results>/ray/                 Tune's experiment folders (error files, retry checkpoints)
    <results>/.running/<sweep>.json  the driver of a sweep that has not finished (pid, host)
"""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = "runs"
RAY_DIR = "ray"
STATE_DIR = ".running"
CHECKPOINT = "checkpoint.pt"  # trainer.CHECKPOINT, without importing torch here


def run_dir(results: Path, trial_id: str) -> Path:
    return results / RUNS_DIR / trial_id


def state_path(results: Path, sweep: str) -> Path:
    return results / STATE_DIR / f"{sweep}.json"
