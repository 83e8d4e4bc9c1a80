"""The driver side of a sweep: a Tune callback that writes the store and W&B and feeds the display.

Every trial's messages (`messages.TrialMessage`) arrive here, on the driver, so the store stays in
one place when trials run on other nodes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray import tune

from ..store import ClaimLost, Owner, ResultStore, summarize_records
from .expand import Trial
from .messages import TrialMessage
from .plan import SweepPlan
from .provenance import now
from .trainable import TRIAL_KEY

# Per-trial start-up and orchestration costs, measured in the worker (trials table, `timing.<key>`):
# which trial of its worker process this was (1: a fresh process, > 1: a reused actor), seconds
# importing torch/timm/tort, loading the dataset, building model/optimiser/loaders (and restoring a
# checkpoint), in trainer.fit, and waiting in tune.report (the driver's round trip).
TIMING_KEYS = ("process_trial", "import_seconds", "data_seconds", "build_seconds", "fit_seconds", "report_seconds")


def trial_id(trial) -> str:
    """The tort trial id of a Tune trial (also its name and directory)."""
    return trial.config[TRIAL_KEY]


def error_text(trial) -> str:
    """The last line of a failed Tune trial's error file, e.g. "RuntimeError: boom"."""
    text = ""
    try:
        path = trial.error_file
        if path and Path(path).exists():
            text = Path(path).read_text()
    except Exception:  # noqa: BLE001 - error reporting must not fail the sweep
        text = ""
    if not text:
        return "the trial raised an error (no error file)"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    candidates = [ln for ln in lines if ":" in ln and not ln.startswith(("File ", "^", "~"))]
    return (candidates[-1] if candidates else lines[-1])[:2000]


class StoreCallback(tune.Callback):
    """Writes the store and W&B, and feeds the display, from Tune's events on the driver.

    Every write goes through the driver's claim on the trial (`owner`): a driver that lost its
    lease writes nothing more for that trial (`lost`).

    Args:
        plan: the sweep being run.
        trials: the trials this Tuner runs (the ones claimed for this round).
        store: the results store.
        owner: this driver, as the store's claims name it.
        tracker: a `tracking.WandbTracker`, or None (`--no-wandb`).
        display: the live `display.SweepDisplay`.
    """

    def __init__(self, plan: SweepPlan, trials: list[Trial], store: ResultStore, owner: Owner, tracker, display):
        self.plan = plan
        self.store = store
        self.owner = owner
        self.tracker = tracker
        self.display = display
        self.trials = {t.id: t for t in trials}
        self.info: dict[str, dict[str, Any]] = {}
        self.final: dict[str, TrialMessage] = {}
        self.started: dict[str, float] = {}
        self.last_epoch: dict[str, int] = {}
        self.finished: set[str] = set()
        self.held: dict[str, str] = {}  # trial id → who holds its run directory (run it later)
        self.lost: set[str] = set()

    def __reduce__(self):
        # Tune pickles its run config (tuner.pkl) for Tuner.restore, which tort does not use;
        # the store, display and W&B handles cannot be pickled, so a plain callback stands in.
        return (tune.Callback, ())

    def _write(self, tid: str, write, *args, **kwargs) -> None:
        if tid in self.lost:
            return
        try:
            write(tid, *args, self.owner, **kwargs)
        except ClaimLost as e:
            self.lost.add(tid)
            self.display.note(f"{tid}: {e}; its results from here on are left to that driver")

    # -- Tune's events ----------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        tid = trial_id(trial)
        self.started.setdefault(tid, time.monotonic())
        self.display.trial_started(tid)
        if self.tracker is not None:
            t = self.trials[tid]
            run_id = tid if not self.plan.force else f"{tid}-{int(time.time())}"
            self.tracker.start(tid, f"{t.sweep}/{t.label}", {"trial_id": tid, **t.config.flat()},
                               [t.sweep, t.dataset, t.config.recipe], run_id)

    def on_trial_recover(self, iteration, trials, trial, **info):
        tid = trial_id(trial)
        self._write(tid, self.store.add_attempt)
        self.display.trial_retry(tid)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        msg = TrialMessage.from_result(result)
        if msg is not None:
            self.receive(trial_id(trial), msg)

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = trial_id(trial)
        if tid in self.held:
            return  # it did not run: the sweep runs it again in a later round
        final = self.final.get(tid)
        if final is not None:
            status, error = final.status or "failed", final.error
        elif self.last_epoch.get(tid, 0) >= self.trials[tid].config.total_epochs:
            status, error = "completed", None
        else:
            status, error = "stopped", None  # stopped by the early-stopping scheduler
        self.summarise(tid, status, error)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.summarise(trial_id(trial), "failed", error_text(trial), trial.error_file)

    # -- what they do -----------------------------------------------------------------------
    def receive(self, tid: str, msg: TrialMessage) -> None:
        """One message from a trial's worker."""
        if msg.info:
            self.info[tid] = msg.info
        if msg.kind == "start":
            self._write(tid, self.store.update_trial, msg.hw)  # this attempt's hardware
        elif msg.kind == "held":
            self.held[tid] = msg.error or "another process"
        elif msg.kind == "final":
            self.final[tid] = msg
        elif msg.records:
            self._write(tid, self.store.add_epochs, msg.records)
            for r in msg.records:
                self.last_epoch[tid] = max(self.last_epoch.get(tid, 0), int(r.get("epoch", 0)))
                self.display.epoch(tid, r)
                if self.tracker is not None:
                    self.tracker.log(tid, r, step=int(r.get("epoch", 0)))

    def summarise(self, tid: str, status: str, error: str | None, error_file: str | None = None) -> None:
        """The trial's summary, once, when Tune says it ended; its claim is given back with it."""
        if tid in self.finished:
            return
        self.finished.add(tid)
        records = [{k: v for k, v in rec.items() if isinstance(v, (int, float)) and v == v}
                   for rec in self.store.epochs_of(tid).to_dict("records")]
        summary = summarize_records(status, records, error)
        summary["epochs_done"] = summary.pop("epochs")
        info = self.info.get(tid, {})
        row = {**summary, "total_epochs": self.trials[tid].config.total_epochs,
               "elapsed_seconds": time.monotonic() - self.started.get(tid, time.monotonic()),
               "finished_at": now(), "error_file": error_file,
               **{k: info.get(k) for k in ("train_size", "test_size", "num_classes", "parameters")},
               "resumed_from_epoch": info.get("start_epoch"),  # the last attempt's first epoch - 1
               **{f"timing.{k}": info.get("timing", {}).get(k) for k in TIMING_KEYS}}
        self._write(tid, self.store.update_trial, row, release=True)
        self.display.trial_finished(tid, status)
        if self.tracker is not None:
            self.tracker.finish(tid, {k: v for k, v in summary.items() if v is not None})


def trial_row(plan: SweepPlan, trial: Trial, common: dict[str, Any]) -> dict[str, Any]:
    """The columns a trial's row starts with when a driver first claims it: its configuration,
    the sweep that computes it, its axis values there, and `common` (git.*, version.*)."""
    return {"trial_id": trial.id, "sweep": plan.spec.name, **trial.config.flat(),
            "axes": json.dumps(trial.axes, sort_keys=True), "total_epochs": trial.config.total_epochs, **common}
