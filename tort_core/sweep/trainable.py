"""The trainable: one trial, run by Tune in a Ray worker.

No torch at import time: a worker imports this module to unpickle the trainable, and the trial
itself imports the trainer (`timing.import_seconds` says how long that takes).

Tune reuses the worker (actor) for the next trial (`reuse_actors`): torch, timm and tort are
imported once per process and each dataset is loaded once (`load_dataset(cache=True)`); nothing
else carries over from one trial to the next (the trainer seeds every RNG and builds every object
per run; `fresh_process_state` resets the rest).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from .layout import CHECKPOINT

TRIAL_KEY = "tort_trial"  # the one key of Tune's per-trial config: the trial id


@dataclass(frozen=True)
class TrialPayload:
    """What every trial of a sweep shares, sent once through Ray's object store."""

    configs: dict[str, dict[str, Any]]  # trial id → resolved config (JSON)
    runs_root: str  # <results>/runs, absolute (Tune moves the worker into its own trial directory)
    cpus: float
    gpus: float
    versions: dict[str, str | None]  # version.* of the driver's packages
    tune_checkpoints: bool  # several nodes: Tune keeps a copy of each epoch checkpoint for a retry


class RunDirHeld(Exception):
    """Another live process holds the run directory's lock (its message names the holder)."""


@contextlib.contextmanager
def exclusive(run_dir: Path, grace: float = 5.0):
    """Hold the run directory's lock: two processes must never write one run directory (a worker
    of a killed driver may still be finishing its step). flock is released by the kernel when its
    holder dies. A lock still held after `grace` seconds raises RunDirHeld at once, naming the
    holder (host and pid, written into the lock file), instead of waiting on it."""
    with open(run_dir / ".lock", "a+") as fh:
        deadline = time.monotonic() + grace
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    raise RunDirHeld(f"run directory {run_dir} is in use by {holder}") from None
                time.sleep(0.2)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_PROCESS_TRIALS = 0  # trials this worker process has started (> 1: a reused Ray actor)


def fresh_process_state(cfg: RunConfig, process_trial: int) -> None:
    """What a reused actor must reset so that its next trial runs as in a fresh process."""
    if cfg.compile:
        import torch._dynamo

        torch._dynamo.reset()  # compiled graphs of the previous trial's modules (and the recompile budget)
    if process_trial > 1:
        # peak_mem_mb on a CPU is the process's maximum RSS: restart it from now (Linux ≥ 4.0).
        with contextlib.suppress(OSError):
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")


def trial_config(payload: TrialPayload, trial_id: str, on_gpu: bool) -> RunConfig:
    """The trial's config, with the runtime-only settings this worker decides."""
    cfg = RunConfig.model_validate(payload.configs[trial_id])
    if cfg.device == "auto" and not on_gpu:
        cfg.device = "cpu"  # a CPU trial on a GPU node must leave the GPUs to GPU trials
    if payload.tune_checkpoints:
        # Each epoch's report hands Tune the finished file, which it then uploads in the loop
        # anyway: a background write would only hand over the previous epoch's file.
        cfg.checkpoint_write = "sync"
    # Loader workers and torch threads within the trial's CPU reservation (runtime-only keys).
    cfg.data.num_workers = min(cfg.data.num_workers, max(0, int(payload.cpus) - 1))
    cfg.threads = cfg.threads or max(1, int(payload.cpus))
    return cfg


def restore_from_tune(run_dir: Path) -> None:
    """A retry on a node that lacks the run directory's checkpoint starts from Tune's copy."""
    from ray import tune

    local = run_dir / CHECKPOINT
    restored = tune.get_checkpoint()
    if restored is None or local.exists():
        return
    with restored.as_directory() as d:
        if (Path(d) / CHECKPOINT).exists():
            shutil.copy2(Path(d) / CHECKPOINT, local)


def train_trial(config: dict[str, Any], payload: TrialPayload) -> None:
    """One trial in a Ray worker: `config` names the trial (`TRIAL_KEY`), `payload` holds every
    trial's resolved config and the run settings."""
    global _PROCESS_TRIALS
    t_entry = time.monotonic()
    _PROCESS_TRIALS += 1
    import ray
    import torch

    from ..data import load_dataset
    from ..errors import TortError
    from ..trainer import fit
    from .messages import TrialMessage
    from .provenance import hardware
    from .reporter import TuneReporter

    # Where the trial's time goes before and around training (→ the trials table's timing.*).
    timing: dict[str, Any] = {"process_trial": _PROCESS_TRIALS, "import_seconds": time.monotonic() - t_entry,
                              "report_seconds": 0.0}
    tid = config[TRIAL_KEY]
    cfg = trial_config(payload, tid, on_gpu=bool(ray.get_gpu_ids()))
    torch.set_num_threads(cfg.threads)  # fit sets it too; the hardware record reads it
    fresh_process_state(cfg, _PROCESS_TRIALS)
    hw = {**hardware(cfg.device, payload.cpus, payload.gpus), **payload.versions}
    run_dir = Path(payload.runs_root) / tid
    run_dir.mkdir(parents=True, exist_ok=True)
    reporter = TuneReporter(run_dir, hw, timing, built_at=time.monotonic(), tune_checkpoints=payload.tune_checkpoints)
    # The driver learns the hardware before anything can fail (a trial may raise before epoch 1).
    reporter.send(TrialMessage(kind="start", hw=hw))
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive(run_dir))
        except RunDirHeld as held:
            # Not a failure of the trial: the driver runs it again once the holder is gone.
            reporter.send(TrialMessage(kind="held", hw=hw, error=str(held)))
            return
        restore_from_tune(run_dir)
        t_data = time.monotonic()
        # Loaded (and decoded) once per worker process: a reused actor's next trial gets it from
        # the cache, as its own shallow copy.
        data = load_dataset(cfg.data.dataset, cfg.data.root, cache=True)
        reporter.built_at = time.monotonic()
        timing["data_seconds"] = reporter.built_at - t_data
        try:
            # A checkpoint a full disk truncated is moved aside and the trial starts over; raising
            # instead would fail the trial again at every --resume.
            result = fit(cfg, run_dir, callbacks=[reporter], resume=True, data=data, on_corrupt="restart")
        except TortError as err:
            # Deterministic (bad data, a config the model rejects): a retry would fail the same
            # way, so the trial ends failed, with the one-line reason, instead of raising to Tune.
            reporter.send(reporter.message("final", status="failed", error=str(err)))
            return
        if reporter.fit_started is not None:
            timing["fit_seconds"] = time.monotonic() - reporter.fit_started
        reporter.send(reporter.message("final", status=result.status, error=result.error))
