"""The trainer callback that sends a trial's epochs from its Ray worker to the sweep driver.

Imported by the trainable inside the worker only (it imports the trainer, hence torch).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ray import tune

from ..config import RunConfig
from ..trainer import Callback
from .layout import CHECKPOINT
from .messages import TrialMessage

INFO_KEYS = ("train_size", "test_size", "num_classes", "parameters", "total_epochs", "steps_per_epoch", "start_epoch")


class TuneReporter(Callback):
    """Reports each finished epoch with `tune.report` as a `TrialMessage`, and the epochs a
    checkpoint restored (a driver may have missed them) as one `replay` message.

    Args:
        run_dir: the trial's run directory (where its checkpoint lives).
        hw: this attempt's `hw.*`/`version.*`, sent with every message.
        timing: the trial's timing dict (the trials table's `timing.*`); this callback adds
            `build_seconds` and `report_seconds` to it, and the trainable `fit_seconds`.
        built_at: `time.monotonic()` when the data was loaded (build time runs from there).
        tune_checkpoints: attach each epoch's checkpoint to its report, so that Tune keeps a copy
            for a retry on another node (several nodes only; on one node it would only cost a full
            copy per epoch).
    """

    def __init__(self, run_dir: Path, hw: dict[str, Any], timing: dict[str, Any], built_at: float,
                 tune_checkpoints: bool):
        self.run_dir = run_dir
        self.hw = hw
        self.timing = timing
        self.built_at = built_at
        self.tune_checkpoints = tune_checkpoints
        self.info: dict[str, Any] = {"timing": timing}
        self.fit_started: float | None = None

    def send(self, message: TrialMessage, checkpoint: tune.Checkpoint | None = None) -> None:
        t = time.monotonic()
        tune.report(message.to_result(), checkpoint=checkpoint)  # waits for the driver to take the result
        self.timing["report_seconds"] = self.timing.get("report_seconds", 0.0) + time.monotonic() - t

    def message(self, kind: str, **fields: Any) -> TrialMessage:
        return TrialMessage(kind=kind, hw=self.hw, info=self.info, **fields)

    def on_fit_start(self, cfg: RunConfig, info: dict[str, Any]) -> None:
        self.fit_started = time.monotonic()
        self.timing["build_seconds"] = self.fit_started - self.built_at
        self.info = {**{k: info.get(k) for k in INFO_KEYS}, "timing": self.timing}
        if info.get("records"):
            self.send(self.message("replay", records=info["records"]))

    def on_epoch_end(self, record: dict[str, float], checkpoint: Path | None) -> None:
        message = self.message("epoch", records=[record])
        if not self.tune_checkpoints or checkpoint is None or not Path(checkpoint).exists():
            # One node: runs/<id>/checkpoint.pt is a retry's resume point.
            self.send(message)
            return
        stage = self.run_dir / ".tune_checkpoint"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        try:
            os.link(checkpoint, stage / CHECKPOINT)  # no copy here: tune.report copies it to storage
        except OSError:
            shutil.copy2(checkpoint, stage / CHECKPOINT)
        try:
            self.send(message, checkpoint=tune.Checkpoint.from_directory(str(stage)))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
