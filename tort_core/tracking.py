"""Weights & Biases: one W&B run per trial, grouped by sweep, written from the sweep driver.

wandb is imported only when a tracker is created (`--no-wandb` never imports it). Without
credentials (no WANDB_API_KEY, no api.wandb.ai entry in ~/.netrc) runs are written offline under
`<results>/wandb/` and can be uploaded later with `wandb sync <results>/wandb/offline-run-*`;
an explicit WANDB_MODE always wins. Nothing here needs the network in offline mode.
"""

from __future__ import annotations

import math
import netrc
import os
from pathlib import Path
from typing import Any


def wandb_mode() -> str:
    """The mode W&B runs in: WANDB_MODE if set, else online with credentials, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


class WandbTracker:
    """Trial id → live wandb Run. Many runs are open at once (concurrent trials)."""

    def __init__(self, results_dir: Path, sweep: str, project: str | None = None):
        import wandb  # heavy, and only needed when tracking is on

        self.wandb = wandb
        self.dir = Path(results_dir)  # wandb adds its own "wandb/" folder below this
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sweep = sweep
        self.project = project or os.environ.get("WANDB_PROJECT", "tort")
        self.mode = wandb_mode()
        self.runs: dict[str, Any] = {}

    def start(self, trial_id: str, name: str, config: dict[str, Any], tags: list[str], run_id: str) -> None:
        if trial_id in self.runs:
            return
        settings = self.wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False,
                                       disable_git=True, x_save_requirements=False)
        self.runs[trial_id] = self.wandb.init(
            project=self.project, group=self.sweep, job_type="trial", name=name, id=run_id, resume="allow",
            config=config, tags=tags, dir=str(self.dir), mode=self.mode, reinit="create_new", settings=settings)

    def log(self, trial_id: str, record: dict[str, Any], step: int) -> None:
        run = self.runs.get(trial_id)
        if run is None:
            return
        clean = {k: v for k, v in record.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        run.log(clean, step=step)

    def finish(self, trial_id: str, summary: dict[str, Any]) -> None:
        run = self.runs.pop(trial_id, None)
        if run is None:
            return
        for k, v in summary.items():
            if isinstance(v, (int, float, str)) and v is not None:
                run.summary[k] = v
        run.finish(exit_code=0 if summary.get("status") == "completed" else 1)

    def close(self) -> None:
        for tid in list(self.runs):
            self.finish(tid, {"status": "interrupted"})
