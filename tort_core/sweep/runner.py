"""Running a sweep on Ray Tune, with the results store and W&B written on the driver.

    from tort_core.sweep import plan_sweep, run_sweep
    plan = plan_sweep("sweeps/teacher_temp.yaml", profile="demo", results_dir="results")
    plan.to_run, plan.skipped, plan.cost          # what --dry-run prints
    outcome = run_sweep(plan, wandb=False)        # or run_sweep("sweeps/x.yaml", profile=..., ...)
    outcome.failed, outcome.trials                # per-trial status, metrics, error

How a trial travels: the driver expands the spec (every config validated, `plan.py`), drops trials
whose id already has a completed row in the store, and hands the rest to one `Tuner` as a grid
over trial ids. Each trial trains with `trainer.fit` in `<results>/runs/<id>/` (`trainable.py`)
and reports every epoch as a typed message (`messages.py`). Tune's retries (`retries:` →
`FailureConfig(max_failures)`) and a `--resume` after a crash continue from the last finished
epoch: from `runs/<id>/checkpoint.pt`, and on a cluster of several nodes also from the copy Tune
keeps of each epoch checkpoint. The driver-side Tune callback (`driver.py`) writes each epoch row
into the store, logs it to W&B, and writes the summary row when the trial ends. Writing on the
driver keeps the store in one place when trials run on other nodes.

Start-up is paid once per worker process, not per trial: Tune reuses each worker (actor) for the
next trial; the trials table's `timing.*` columns say where each trial's time went.

The modules: `plan` (expansion, store lookup, cost), `preflight` (checks before any trial),
`trainable` + `reporter` (the worker), `messages` (worker → driver), `driver` (the Tune callback),
`provenance` (git, versions, hardware), `outcome` (the per-trial result), and this one, which runs
them in order.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import STORAGE_ERRNOS, ConfigError
from ..store import Heartbeat, Owner, ResultStore
from .layout import RAY_DIR, RUNS_DIR, run_dir, state_path
from .outcome import SweepOutcome, TrialOutcome, collect_outcome
from .plan import CostEstimate, SweepPlan, done_statuses, estimate_cost, plan_sweep
from .preflight import check_address, check_data, check_state, multi_node, resolve_resources
from .provenance import git_info, now, package_versions
from .expand import Trial
from .spec import SweepSpec
from .trainable import TRIAL_KEY, TrialPayload, train_trial

__all__ = ["CostEstimate", "SweepOutcome", "SweepPlan", "TrialOutcome", "done_statuses", "estimate_cost",
           "multi_node", "plan_sweep", "run_sweep"]

# Tune logs every trial failure with its traceback and complains about the loggers tort turns
# off; the store and the final table carry the error, Ray's error.txt the traceback.
_NOISY_LOGGERS = ("ray.tune.execution.tune_controller", "ray.tune.tune", "ray.tune.analysis.experiment_analysis")


def run_sweep(spec: SweepPlan | SweepSpec | str | Path, *, profile: str | None = None,
              sets: dict[str, Any] | None = None, results_dir: str | Path = "results", resume: bool = False,
              force: bool = False, address: str | None = None, max_concurrent: int | None = None,
              gpus_per_trial: float | None = None, cpus_per_trial: float | None = None, wandb: bool = True,
              storage: str | Path | None = None, progress: bool = True,
              console: Console | None = None, reuse_actors: bool = True) -> SweepOutcome:
    """Run (or resume) a sweep and return every trial's outcome.

    Reuses a Ray session that is already initialised (notebooks, tests); otherwise starts a local
    one, or connects to `address` (an existing cluster), and shuts down what it started. Raises
    ConfigError (or DataError) before any trial starts when the spec, the overrides, the
    resources or a dataset root are wrong. `reuse_actors=False` runs every trial in a fresh
    worker process (same results, seconds slower per trial: for comparisons).

    Several drivers may run sweeps on one store at once: each trial is claimed in the store by
    one driver (a lease its heartbeat renews); a driver runs what it claimed and waits for the
    trials of its sweep that another driver runs.
    """
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    plan = spec if isinstance(spec, SweepPlan) else plan_sweep(spec, profile, sets, results_dir, force)
    force = force or plan.force
    store = ResultStore(plan.results_dir)
    t_start = time.monotonic()
    check_state(plan, resume, force)
    if address is None:
        check_data(plan)
    if not plan.to_run:
        store.add_members(member_rows(plan))
        return collect_outcome(plan, store, time.monotonic() - t_start, interrupted=False)

    timing: dict[str, float] = {}
    with ray_session(address, timing):
        t_setup = time.monotonic()
        gpus, cpus = resolve_resources(plan.spec, gpus_per_trial, cpus_per_trial, local=address is None,
                                       console=console)
        # Nothing in the store changes before this point: bad input leaves it as it was.
        prepare_store(plan, store)
        settings = RoundSettings(concurrency=max_concurrent or plan.spec.max_concurrent, cpus=cpus, gpus=gpus,
                                 storage=Path(storage).expanduser().resolve() if storage else plan.results_dir / RAY_DIR,
                                 reuse_actors=reuse_actors)
        tracker = None
        if wandb:
            from ..tracking import WandbTracker

            tracker = WandbTracker(plan.results_dir, plan.spec.name)
        try:
            display = make_display(plan, settings.concurrency, console, progress)
            interrupted = run_rounds(plan, store, settings, tracker, display, force=force, timing=timing,
                                     t_setup=t_setup)
        finally:
            if tracker is not None:
                tracker.close()
        if not interrupted:
            state_path(plan.results_dir, plan.spec.name).unlink(missing_ok=True)
        outcome = collect_outcome(plan, store, time.monotonic() - t_start, interrupted=interrupted)
    outcome.timing = timing
    outcome.wall_seconds = time.monotonic() - t_start
    return outcome


def member_rows(plan: SweepPlan) -> list[dict[str, Any]]:
    """The sweep's membership rows: which trials it contains, with their axis values."""
    return [{"sweep": plan.spec.name, "trial_id": t.id, "axes": json.dumps(t.axes, sort_keys=True),
             "label": t.label, "seed": t.seed, "dataset": t.dataset, "spec": plan.spec.source,
             "added_at": now()} for t in plan.trials]


def _tune_environment() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Epoch records omit test_top1 between evaluations; ASHA skips such results by itself.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # The store is the log: Tune's own CSV/JSON/TensorBoard loggers would only duplicate it.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # One checkpoint per epoch is the point here, not a misconfiguration to warn about.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@contextlib.contextmanager
def ray_session(address: str | None, timing: dict[str, float]):
    """Use the Ray session that is up, or start (or join) one and shut it down at the end.
    Records `ray_init_seconds` and `shutdown_seconds` in `timing`."""
    _tune_environment()
    import ray

    started = False
    t0 = time.monotonic()
    if not ray.is_initialized():
        if address is not None:
            check_address(address)
        try:
            # Without --address, a Ray of this sweep's own: `address=None` would join any cluster
            # another process on this machine started (or RAY_ADDRESS names), and run there.
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            if address is None:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--address {address}: cannot join a Ray cluster ({first}); start one with "
                              f"`ray start --head`, or omit --address for a local run") from None
        started = True
    timing["ray_init_seconds"] = time.monotonic() - t0
    try:
        yield
    finally:
        t_end = time.monotonic()
        if started:
            ray.shutdown()
        timing["shutdown_seconds"] = time.monotonic() - t_end


def prepare_store(plan: SweepPlan, store: ResultStore) -> None:
    """Before Tune starts: record the sweep's membership and mark the sweep as running (its
    state file: a later start without --resume is told it was interrupted)."""
    store.add_members(member_rows(plan))
    path = state_path(plan.results_dir, plan.spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": now(),
                                "trials": [t.id for t in plan.to_run]}))


@dataclass(frozen=True)
class RoundSettings:
    concurrency: int | None
    cpus: float
    gpus: float
    storage: Path  # Tune's storage path
    reuse_actors: bool


# A trial whose run directory stays held (by a process outside any claim) is given up after this
# many rounds, with an error naming the holder.
MAX_HELD_ROUNDS = 5


def run_rounds(plan: SweepPlan, store: ResultStore, settings: RoundSettings, tracker, display, *, force: bool,
               timing: dict[str, float], t_setup: float) -> bool:
    """Claim what no other driver holds, run it, wait for what others hold, until every trial of
    the plan is finished (by this driver or another). Returns whether the sweep was interrupted."""
    from .driver import trial_row

    owner = Owner.new(plan.spec.name)
    common = {**git_info(), **package_versions()}
    done = done_statuses(plan.spec)
    pending = list(plan.to_run)
    held_rounds: dict[str, int] = {}
    waiting = False
    fresh = force
    timing.setdefault("tune_seconds", 0.0)
    with Heartbeat(store, owner):
        try:
            while pending:
                claims = store.claim([trial_row(plan, t, common) for t in pending], owner, done, fresh=fresh)
                if fresh:
                    for tid in claims.claimed:  # --force: the trial starts over, checkpoint included
                        shutil.rmtree(run_dir(plan.results_dir, tid), ignore_errors=True)
                    fresh = False  # once: a later round must not discard what this one computed
                pending = [t for t in pending if t.id not in claims.done]
                batch = [t for t in pending if t.id in claims.claimed]
                if not batch:
                    if pending and not waiting:
                        waiting = True
                        display.note(f"waiting for {len(claims.held)} trial(s) that another driver runs: "
                                     f"{', '.join(sorted(set(claims.held.values())))}")
                    if pending:
                        time.sleep(min(5.0, store.lease / 4))
                    continue
                waiting = False
                finished, held = run_round(plan, batch, store, owner, settings, tracker, display, timing, t_setup)
                pending = [t for t in pending if t.id not in finished]
                if any(t.id not in finished and t.id not in held for t in batch):
                    return True  # Tune stopped before these ended: interrupted
                for tid, holder in held.items():
                    held_rounds[tid] = held_rounds.get(tid, 0) + 1
                    display.trial_deferred(tid)
                    if held_rounds[tid] >= MAX_HELD_ROUNDS:
                        store.update_trial(tid, {"status": "failed", "error": holder, "finished_at": now()}, owner,
                                           release=True)
                        pending = [t for t in pending if t.id != tid]
                if held:
                    time.sleep(min(5.0, store.lease / 4))
            return False
        finally:
            # Best effort: a full disk may refuse even this (the leases then lapse on their own),
            # and the error that stopped the sweep is the one to report.
            with contextlib.suppress(sqlite3.Error, OSError):
                store.release([t.id for t in pending], owner)


def run_round(plan: SweepPlan, batch: list[Trial], store: ResultStore, owner: Owner, settings: RoundSettings,
              tracker, display, timing: dict[str, float], t_setup: float) -> tuple[set[str], dict[str, str]]:
    """One Tuner over the claimed trials; returns the ids that finished and those whose run
    directory was held (id → holder)."""
    from .driver import StoreCallback

    callback = StoreCallback(plan, batch, store, owner, tracker, display)
    payload = TrialPayload(configs={t.id: t.config.model_dump(mode="json") for t in batch},
                           runs_root=str(plan.results_dir / RUNS_DIR), cpus=settings.cpus, gpus=settings.gpus,
                           versions=package_versions(), tune_checkpoints=multi_node())
    name = f"{plan.spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    tuner = build_tuner(plan, batch, payload, callback, concurrency=settings.concurrency,
                        storage_path=settings.storage, name=name, reuse_actors=settings.reuse_actors)
    timing.setdefault("setup_seconds", time.monotonic() - t_setup)
    t_fit = time.monotonic()
    try:
        fit_quietly(tuner, display, display.console)
    finally:
        timing["tune_seconds"] += time.monotonic() - t_fit
    drop_tune_copies(settings.storage / name, callback.finished)
    return callback.finished, callback.held


def _trial_name(trial) -> str:
    return trial.config[TRIAL_KEY]


def build_tuner(plan: SweepPlan, trials: list[Trial], payload: TrialPayload, callback, *,
                concurrency: int | None, storage_path: Path, name: str, reuse_actors: bool):
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(train_trial, payload=payload),
                                    {"cpu": payload.cpus, "gpu": payload.gpus})
    scheduler = None
    es = plan.spec.early_stop
    if es is not None:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="epoch", metric=es.metric, mode=es.mode,
                                  max_t=max(t.config.total_epochs for t in trials),
                                  grace_period=es.grace_period, reduction_factor=es.reduction_factor,
                                  stop_last_trials=False)
    return tune.Tuner(
        trainable,
        param_space={TRIAL_KEY: tune.grid_search([t.id for t in trials])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrency, scheduler=scheduler,
            # Same resources for every trial: the next trial runs in the same worker process,
            # without re-importing torch/timm or reloading the dataset (see trainable.py).
            reuse_actors=reuse_actors, trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage_path), verbose=0, callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=plan.spec.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def fit_quietly(tuner, display, console: Console) -> None:
    """Tuner.fit with the live display on and Tune's per-failure tracebacks off."""
    quiet = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    display.start()
    try:
        tuner.fit()
    except Exception as err:  # noqa: BLE001 - re-raised unchanged unless it is a full disk
        storage = storage_error(err)
        if storage is None:
            raise
        # Tune wraps the store's ENOSPC in a TuneError whose text is a traceback; what the user can
        # act on is the OSError (every file is written aside, so --resume continues after).
        raise storage from None
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
        display.stop()


def storage_error(err: BaseException) -> OSError | None:
    """The full-disk (quota, read-only) OSError behind `err`, following causes and contexts."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            return err
        if isinstance(err, sqlite3.OperationalError) and ("disk is full" in str(err) or "readonly" in str(err)):
            # the store's own full disk: SQLite says so in words (and rolls the transaction back)
            code = errno.ENOSPC if "full" in str(err) else errno.EROFS
            return OSError(code, f"{os.strerror(code)} (the results store: {err})")
        err = err.__cause__ or err.__context__
    return None


def drop_tune_copies(experiment: Path, finished: set[str]) -> None:
    """A finished trial's weights stay in runs/<id>/checkpoint.pt; Tune's copy only served retries,
    and at ViT-B scale it is gigabytes per trial."""
    for tid in finished:
        for ckpt in (experiment / tid).glob("checkpoint_*"):
            shutil.rmtree(ckpt, ignore_errors=True)


def make_display(plan: SweepPlan, concurrency: int | None, console: Console, live: bool):
    from .display import SweepDisplay

    rows = [(t.id, t.label, t.config.total_epochs) for t in plan.to_run]
    return SweepDisplay(plan.spec.name, rows, skipped=len(plan.skipped), max_concurrent=concurrency,
                        console=console, live=live)
