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

from ..store import EPOCHS_TABLE, TRIALS_TABLE, ResultStore, summarize_records
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

    Args:
        plan: the sweep being run (its `to_run` trials are the ones Tune runs).
        store: the results store.
        tracker: a `tracking.WandbTracker`, or None (`--no-wandb`).
        display: the live `display.SweepDisplay`.
        meta_common: columns every row of this sweep carries (`git.*`).
    """

    def __init__(self, plan: SweepPlan, store: ResultStore, tracker, display, meta_common: dict[str, Any]):
        self.plan = plan
        self.store = store
        self.tracker = tracker
        self.display = display
        self.meta_common = meta_common
        self.trials = {t.id: t for t in plan.to_run}
        self.flats = {t.id: t.config.flat() for t in plan.to_run}
        self.hw: dict[str, dict[str, Any]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.final: dict[str, TrialMessage] = {}
        self.started: dict[str, tuple[float, str]] = {}
        self.attempts: dict[str, int] = {}
        self.last_epoch: dict[str, int] = {}
        self.finished: set[str] = set()

    def __reduce__(self):
        # Tune pickles its run config (tuner.pkl) for Tuner.restore, which tort does not use;
        # the store, display and W&B handles cannot be pickled, so a plain callback stands in.
        return (tune.Callback, ())

    def _meta(self, tid: str) -> dict[str, Any]:
        t = self.trials[tid]
        return {"sweep": self.plan.spec.name, "trial_id": tid, **self.flats[tid], **self.meta_common,
                **self.hw.get(tid, {}), "axes": json.dumps(t.axes, sort_keys=True)}

    # -- Tune's events ----------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        tid = trial_id(trial)
        self.started.setdefault(tid, (time.monotonic(), now()))
        self.attempts.setdefault(tid, 1)
        self.display.trial_started(tid)
        if self.tracker is not None:
            t = self.trials[tid]
            run_id = tid if not self.plan.force else f"{tid}-{int(time.time())}"
            self.tracker.start(tid, f"{t.sweep}/{t.label}", {"trial_id": tid, **self.flats[tid]},
                               [t.sweep, t.dataset, t.config.recipe], run_id)

    def on_trial_recover(self, iteration, trials, trial, **info):
        tid = trial_id(trial)
        self.attempts[tid] = self.attempts.get(tid, 1) + 1
        self.display.trial_retry(tid)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        msg = TrialMessage.from_result(result)
        if msg is not None:
            self.receive(trial_id(trial), msg)

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = trial_id(trial)
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
        if msg.hw:
            self.hw[tid] = msg.hw
        if msg.info:
            self.info[tid] = msg.info
        if msg.kind == "final":
            self.final[tid] = msg
            return
        if not msg.records:
            return
        meta = self._meta(tid)
        size = {k: self.info.get(tid, {}).get(k) for k in ("train_size", "test_size")}
        self.store.upsert(EPOCHS_TABLE, [{**meta, **size, **r} for r in msg.records])
        for r in msg.records:
            self.last_epoch[tid] = max(self.last_epoch.get(tid, 0), int(r.get("epoch", 0)))
            self.display.epoch(tid, r)
            if self.tracker is not None:
                self.tracker.log(tid, r, step=int(r.get("epoch", 0)))

    def summarise(self, tid: str, status: str, error: str | None, error_file: str | None = None) -> None:
        """The trial's summary row, once, when Tune says it ended."""
        if tid in self.finished:
            return
        self.finished.add(tid)
        records = [{k: v for k, v in rec.items() if isinstance(v, (int, float)) and v == v}
                   for rec in self.store.epochs_of(tid).to_dict("records")]
        summary = summarize_records(status, records, error)
        summary["epochs_done"] = summary.pop("epochs")
        t0, started_at = self.started.get(tid, (time.monotonic(), now()))
        info = self.info.get(tid, {})
        row = {**self._meta(tid), **summary, "total_epochs": self.trials[tid].config.total_epochs,
               "elapsed_seconds": time.monotonic() - t0, "attempts": self.attempts.get(tid, 1),
               "started_at": started_at, "finished_at": now(),
               "train_size": info.get("train_size"), "test_size": info.get("test_size"),
               "parameters": info.get("parameters"), "error_file": error_file,
               **{f"timing.{k}": info.get("timing", {}).get(k) for k in TIMING_KEYS}}
        self.store.upsert(TRIALS_TABLE, [row])
        self.display.trial_finished(tid, status)
        if self.tracker is not None:
            self.tracker.finish(tid, {k: v for k, v in summary.items() if v is not None})
