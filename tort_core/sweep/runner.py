"""Running a sweep on Ray Tune, with the results store and W&B written on the driver.

    from tort_core.sweep import plan_sweep, run_sweep
    plan = plan_sweep("sweeps/teacher_temp.yaml", profile="demo", results_dir="results")
    plan.to_run, plan.skipped, plan.cost          # what --dry-run prints
    outcome = run_sweep(plan, wandb=False)        # or run_sweep("sweeps/x.yaml", profile=..., ...)
    outcome.failed, outcome.trials                # per-trial status, metrics, error

How a trial travels: the driver expands the spec (every config validated), drops trials whose id
already has a completed row in the store, and hands the rest to one `Tuner` as a grid over trial
ids. Each trial trains with `trainer.fit` in `<results>/runs/<id>/` (absolute path: Tune moves the
worker into its own trial directory) and reports every epoch with `ray.tune.report`. Tune's
retries (`retries:` → `FailureConfig(max_failures)`) and a `--resume` after a crash continue from
the last finished epoch: from `runs/<id>/checkpoint.pt`, and on a cluster of several nodes also from
the copy Tune keeps of each epoch checkpoint (attached to the report; on one node it would only
cost a full copy per epoch). The driver-side Tune callback upserts each epoch row into the store,
logs it to W&B, and writes the summary row when the trial ends. Writing on the driver keeps the
store in one place when trials run on other nodes.

Start-up is paid once per worker process, not per trial: Tune reuses each worker (actor) for the
next trial, so torch/timm are imported and each dataset is loaded once per worker (see
`_train_trial`); the trials table's `timing.*` columns say where each trial's time went.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from ..catalog import DATASET_INFO
from ..config import RunConfig, missing_checkpoint
from ..errors import ConfigError, DataError
# pandas-only, no torch: Ray workers import this module to unpickle the trainable, and the trial
# itself imports the trainer (timing.import_seconds says how long that takes).
from ..store import EPOCHS_TABLE, MEMBERS_TABLE, TRIALS_TABLE, ResultStore, summarize_records
from .expand import Expansion, Trial, expand
from .spec import SweepSpec, load_spec

RUNS_DIR = "runs"
RAY_DIR = "ray"
STATE_DIR = ".running"
CHECKPOINT = "checkpoint.pt"  # trainer.CHECKPOINT, without importing torch here

# Training throughput (images/s, evaluation included) assumed when the store has no comparable
# measured trial: rough figures for the two profiles, to be replaced by measurements.
NOMINAL_IMAGES_PER_S = {"demo": 60.0, "thesis": 40.0}


# ---------------------------------------------------------------------------------------------
# Planning: expansion + store lookup + cost. No Ray, no torch training.

@dataclass
class CostEstimate:
    trial_epochs: int
    train_images: int  # images passed through training, all trials, all epochs
    seconds: float | None  # sum over trials (device-seconds)
    source: str  # "measured (n trials)" | "nominal" | "unknown"
    per_trial: dict[str, float] = field(default_factory=dict)

    def describe(self, concurrency: int | None = None) -> str:
        from .display import fmt_seconds

        if self.trial_epochs == 0:
            return "nothing to run: every trial is complete in the store (--force recomputes)"
        parts = [f"{self.trial_epochs:,} trial-epochs", f"{self.train_images:,} training images"]
        if self.seconds is not None:
            parts.append(f"≈ {fmt_seconds(self.seconds)} of device time ({self.source})")
            if concurrency:
                parts.append(f"≈ {fmt_seconds(self.seconds / concurrency)} wall with {concurrency} concurrent")
        else:
            parts.append("time unknown (no dataset size)")
        return ", ".join(parts)


@dataclass
class SweepPlan:
    """What a sweep would do; `run_sweep` executes it."""

    expansion: Expansion
    results_dir: Path
    to_run: list[Trial]
    skipped: list[Trial]  # already completed in the store
    partial: set[str]  # trial ids with a checkpoint to resume from
    cost: CostEstimate
    force: bool = False

    @property
    def spec(self) -> SweepSpec:
        return self.expansion.spec

    @property
    def trials(self) -> list[Trial]:
        return self.expansion.trials


def done_statuses(spec: SweepSpec) -> set[str]:
    # An early-stopped trial is finished for a sweep that early-stops, not for one that does not.
    return {"completed", "stopped"} if spec.early_stop else {"completed"}


def plan_sweep(spec: SweepSpec | str | Path, profile: str | None = None, sets: dict[str, Any] | None = None,
               results_dir: str | Path = "results", force: bool = False) -> SweepPlan:
    """Validate and expand a spec and compare it with the store; raises ConfigError on bad input."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    exp = expand(spec, profile=profile, sets=sets)
    if spec.early_stop is not None:
        longest = max(t.config.total_epochs for t in exp.trials)
        if spec.early_stop.grace_period >= longest:
            raise ConfigError(f"{spec.source}: early_stop.grace_period: {spec.early_stop.grace_period} epochs is not "
                              f"below the trials' {longest} epochs; lower it or remove early_stop")
    results = Path(results_dir).expanduser().resolve()
    store = ResultStore(results)
    statuses = store.statuses()
    done = done_statuses(spec)
    if force:
        to_run, skipped = list(exp.trials), []
    else:
        skipped = [t for t in exp.trials if statuses.get(t.id) in done]
        to_run = [t for t in exp.trials if statuses.get(t.id) not in done]
    partial = {t.id for t in to_run if (results / RUNS_DIR / t.id / CHECKPOINT).exists()} if not force else set()
    return SweepPlan(exp, results, to_run, skipped, partial, estimate_cost(to_run, store), force)


def _trial_size(cfg: RunConfig) -> tuple[int, int] | None:
    info = DATASET_INFO.get(cfg.data.dataset)
    sizes = info.sizes if info is not None else None
    if sizes is None:
        return None
    train, test = sizes
    if cfg.data.train_limit:
        train = min(train, cfg.data.train_limit)
    if cfg.data.test_limit:
        test = min(test, cfg.data.test_limit)
    return train, test


_COMPARABLE = ("recipe", "model.name", "views.global_size", "views.local_size", "views.n_local", "batch_size")


def estimate_cost(trials: list[Trial], store: ResultStore | None = None) -> CostEstimate:
    """Trial-epochs, images, and device-time: measured seconds per training image of comparable
    completed trials in the store (same recipe, model, view sizes, batch), else a nominal rate."""
    measured: dict[tuple, float] = {}
    rows = store.read(TRIALS_TABLE) if store is not None else None
    if rows is not None and not rows.empty and {"wall_seconds", "epochs_done", "train_size"} <= set(rows.columns):
        ok = rows[(rows["status"] == "completed") & (rows["train_size"] > 0) & (rows["epochs_done"] > 0)]
        ok = ok.dropna(subset=[c for c in _COMPARABLE if c in ok.columns])
        if all(c in ok.columns for c in _COMPARABLE) and not ok.empty:
            per_image = ok["wall_seconds"] / (ok["epochs_done"] * ok["train_size"])
            for key, group in per_image.groupby([ok[c].astype(str) for c in _COMPARABLE]):
                measured[tuple(str(k) for k in key)] = (float(group.median()), len(group))
    total, images, epochs, nominal = 0.0, 0, 0, 0
    basis: set[tuple] = set()
    per_trial: dict[str, float] = {}
    unknown = False
    for t in trials:
        cfg = t.config
        n_epochs = cfg.total_epochs
        epochs += n_epochs
        size = _trial_size(cfg)
        if size is None:
            unknown = True
            continue
        images += n_epochs * size[0]
        flat = cfg.flat()
        key = tuple(str(flat[c]) for c in _COMPARABLE)
        if key in measured:
            secs = n_epochs * size[0] * measured[key][0]
            basis.add(key)
        else:
            secs = n_epochs * size[0] / NOMINAL_IMAGES_PER_S.get(cfg.profile, 40.0)
            nominal += 1
        per_trial[t.id] = secs
        total += secs
    if unknown and not per_trial:
        return CostEstimate(epochs, images, None, "unknown", per_trial)
    n_basis = sum(measured[k][1] for k in basis)
    rates = sorted({NOMINAL_IMAGES_PER_S.get(t.config.profile, 40.0) for t in trials})
    rate = "/".join(f"{r:g}" for r in rates) + " img/s"
    source = (f"rate measured on {n_basis} completed comparable trial(s)" if basis and not nominal
              else f"nominal rate ({rate}); no comparable trial measured yet" if not basis
              else f"{nominal} trial(s) at a nominal rate, the rest measured on {n_basis} trial(s)")
    return CostEstimate(epochs, images, total, source, per_trial)


# ---------------------------------------------------------------------------------------------
# Provenance: git commit and package versions (driver), hardware (worker).

def git_info() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip()) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"git.commit": commit, "git.dirty": dirty}


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"version.python": platform.python_version()}
    for pkg in ("tort", "torch", "timm", "ray", "numpy", "torchvision"):
        try:
            out[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[f"version.{pkg}"] = None
    return out


def _hardware(cfg: RunConfig, cpus: float, gpus: float) -> dict[str, Any]:
    import ray
    import torch

    from ..trainer import resolve_device

    device = resolve_device(cfg.device)
    return {"hw.host": socket.gethostname(), "hw.device": device.type,
            "hw.gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "hw.cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "hw.ray_gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
            "hw.cpus": float(cpus), "hw.gpus": float(gpus), "hw.torch_threads": torch.get_num_threads(),
            "hw.cpu_count": os.cpu_count(), "hw.pid": os.getpid(),
            "hw.started_at": _now()}  # this attempt's start, on the worker (placement is done by then)


# ---------------------------------------------------------------------------------------------
# The trainable (runs in a Ray worker).

@contextlib.contextmanager
def _exclusive(run_dir: Path, timeout: float = 300.0):
    # A worker of a killed driver may still be finishing its step: never let two processes write
    # one run directory. flock is released by the kernel when its holder dies.
    with open(run_dir / ".lock", "a+") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run directory {run_dir} is locked by another process") from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_PROCESS_TRIALS = 0  # trials this worker process has started (> 1: a reused Ray actor)


def _fresh_process_state(cfg: RunConfig) -> None:
    """What a reused actor must reset so that its next trial runs as in a fresh process."""
    if cfg.compile:
        import torch._dynamo

        torch._dynamo.reset()  # compiled graphs of the previous trial's modules (and the recompile budget)
    if _PROCESS_TRIALS > 1:
        # peak_mem_mb on a CPU is the process's maximum RSS: restart it from now (Linux ≥ 4.0).
        with contextlib.suppress(OSError):
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")


def _train_trial(config: dict[str, Any], payload: dict[str, Any]) -> None:
    """One trial in a Ray worker: `config` names the trial, `payload` (shared by all trials, sent
    once through Ray's object store) holds every trial's resolved config and the run settings.

    Tune reuses the worker (actor) for the next trial (`reuse_actors`): torch, timm and tort are
    imported once per process and each dataset is loaded once (`load_dataset(cache=True)`); nothing
    else carries over from one trial to the next (the trainer seeds every RNG and builds every
    object per run; `_fresh_process_state` resets the rest).
    """
    global _PROCESS_TRIALS
    t_entry = time.monotonic()
    _PROCESS_TRIALS += 1
    import ray
    import torch
    from ray import tune

    from ..data import load_dataset
    from ..trainer import Callback, fit

    # Where the trial's time goes before and around training (→ the trials table's timing.*).
    timing: dict[str, Any] = {"process_trial": _PROCESS_TRIALS, "import_seconds": time.monotonic() - t_entry,
                              "report_seconds": 0.0}
    tid = config["tort_trial"]
    cfg = RunConfig.model_validate(payload["configs"][tid])
    cpus, gpus = payload["cpus"], payload["gpus"]
    if cfg.device == "auto" and not ray.get_gpu_ids():
        cfg.device = "cpu"  # a CPU trial on a GPU node must leave the GPUs to GPU trials
    if payload["tune_checkpoints"]:
        # Each epoch's report hands Tune the finished file, which it then uploads in the loop
        # anyway: a background write would only hand over the previous epoch's file.
        cfg.checkpoint_write = "sync"
    # Threads and loader workers within the trial's CPU reservation (both runtime-only keys).
    torch.set_num_threads(max(1, int(cpus)))
    cfg.data.num_workers = min(cfg.data.num_workers, max(0, int(cpus) - 1))
    _fresh_process_state(cfg)
    hw = {**_hardware(cfg, cpus, gpus), **payload["versions"]}
    run_dir = Path(payload["runs_root"]) / tid
    run_dir.mkdir(parents=True, exist_ok=True)

    def report(metrics: dict[str, Any], checkpoint=None) -> None:
        t = time.monotonic()
        tune.report(metrics, checkpoint=checkpoint)  # waits for the driver to take the result
        timing["report_seconds"] += time.monotonic() - t

    class Reporter(Callback):
        def __init__(self) -> None:
            self.info: dict[str, Any] = {}

        def on_fit_start(self, cfg: RunConfig, info: dict[str, Any]) -> None:
            timing["fit_start"] = time.monotonic()
            timing["build_seconds"] = timing["fit_start"] - t_built
            self.info = {k: info[k] for k in ("train_size", "test_size", "parameters", "total_epochs",
                                              "steps_per_epoch")}
            self.info["timing"] = timing
            if info.get("records"):
                # Epochs restored from a checkpoint: the driver may have missed their reports.
                report({"tort": {"kind": "replay", "records": info["records"], "hw": hw, "info": self.info}})

        def on_epoch_end(self, record: dict[str, float], checkpoint: Path | None) -> None:
            message = {**record, "tort": {"kind": "epoch", "record": record, "hw": hw, "info": self.info}}
            if not payload["tune_checkpoints"] or checkpoint is None or not Path(checkpoint).exists():
                # One node: runs/<id>/checkpoint.pt is a retry's resume point, and Tune's copy of it
                # (a full write per epoch: ~1.9 GB for tort at ViT-B) would only slow the trial down.
                report(message)
                return
            stage = run_dir / ".tune_checkpoint"
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir()
            try:
                os.link(checkpoint, stage / CHECKPOINT)  # no copy here: report() copies it to storage
            except OSError:
                shutil.copy2(checkpoint, stage / CHECKPOINT)
            try:
                report(message, checkpoint=tune.Checkpoint.from_directory(str(stage)))
            finally:
                shutil.rmtree(stage, ignore_errors=True)

    # The driver learns the hardware before anything can fail (a trial may raise before epoch 1).
    report({"tort": {"kind": "start", "hw": hw}})
    with _exclusive(run_dir):
        local = run_dir / CHECKPOINT
        restored = tune.get_checkpoint()
        if restored is not None and not local.exists():
            # A retry on a node that lacks the run directory: start from Tune's copy.
            with restored.as_directory() as d:
                if (Path(d) / CHECKPOINT).exists():
                    shutil.copy2(Path(d) / CHECKPOINT, local)
        reporter = Reporter()
        t_data = time.monotonic()
        # Loaded (and decoded) once per worker process: a reused actor's next trial gets it from
        # the cache, as its own shallow copy.
        data = load_dataset(cfg.data.dataset, cfg.data.root, cache=True)
        t_built = time.monotonic()
        timing["data_seconds"] = t_built - t_data
        result = fit(cfg, run_dir, callbacks=[reporter], resume=True, data=data)
        if "fit_start" in timing:
            timing["fit_seconds"] = time.monotonic() - timing.pop("fit_start")
        report({"tort": {"kind": "final", "status": result.status, "error": result.error, "hw": hw,
                         "info": reporter.info}})


# ---------------------------------------------------------------------------------------------
# Driver side: the Tune callback that writes the store and W&B and feeds the display.

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _error_text(trial) -> str:
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
    # Tune's error file ends with the exception's own line, e.g. "RuntimeError: boom".
    candidates = [ln for ln in lines if ":" in ln and not ln.startswith(("File ", "^", "~"))]
    return (candidates[-1] if candidates else lines[-1])[:2000]


# Per-trial start-up and orchestration costs, measured in the worker (trials table, `timing.<key>`):
# which trial of its worker process this was (1: a fresh process, > 1: a reused actor), seconds
# importing torch/timm/tort, loading the dataset, building model/optimiser/loaders (and restoring a
# checkpoint), in trainer.fit, and waiting in tune.report (the driver's round trip).
TIMING_KEYS = ("process_trial", "import_seconds", "data_seconds", "build_seconds", "fit_seconds", "report_seconds")


def _make_callback(plan: SweepPlan, store: ResultStore, tracker, display, meta_common: dict[str, Any]):
    from ray import tune

    class StoreCallback(tune.Callback):
        """Writes the store and W&B, and feeds the display, from Tune's events on the driver."""

        def __init__(self) -> None:
            self.trials = {t.id: t for t in plan.to_run}
            self.flats = {t.id: t.config.flat() for t in plan.to_run}
            self.hw: dict[str, dict[str, Any]] = {}
            self.info: dict[str, dict[str, Any]] = {}
            self.final: dict[str, dict[str, Any]] = {}
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
            return {"sweep": plan.spec.name, "trial_id": tid, **self.flats[tid], **meta_common,
                    **self.hw.get(tid, {}), "axes": json.dumps(t.axes, sort_keys=True)}

        def on_trial_start(self, iteration, trials, trial, **info):
            tid = trial.config["tort_trial"]
            self.started.setdefault(tid, (time.monotonic(), _now()))
            self.attempts.setdefault(tid, 1)
            display.trial_started(tid)
            if tracker is not None:
                t = self.trials[tid]
                run_id = tid if not plan.force else f"{tid}-{int(time.time())}"
                tracker.start(tid, f"{t.sweep}/{t.label}", {"trial_id": tid, **self.flats[tid]},
                              [t.sweep, t.dataset, t.config.recipe], run_id)

        def on_trial_recover(self, iteration, trials, trial, **info):
            tid = trial.config["tort_trial"]
            self.attempts[tid] = self.attempts.get(tid, 1) + 1
            display.trial_retry(tid)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            tid = trial.config["tort_trial"]
            msg = result.get("tort") or {}
            kind = msg.get("kind")
            if msg.get("hw"):
                self.hw[tid] = msg["hw"]
            if msg.get("info"):
                self.info[tid] = msg["info"]
            if kind == "final":
                self.final[tid] = msg
                return
            records = msg.get("records", []) if kind == "replay" else [msg["record"]] if kind == "epoch" else []
            if not records:
                return
            meta = self._meta(tid)
            size = {k: self.info.get(tid, {}).get(k) for k in ("train_size", "test_size")}
            store.upsert(EPOCHS_TABLE, [{**meta, **size, **r} for r in records])
            for r in records:
                self.last_epoch[tid] = max(self.last_epoch.get(tid, 0), int(r.get("epoch", 0)))
                display.epoch(tid, r)
                if tracker is not None:
                    tracker.log(tid, r, step=int(r.get("epoch", 0)))

        def on_trial_complete(self, iteration, trials, trial, **info):
            tid = trial.config["tort_trial"]
            final = self.final.get(tid)
            if final is not None:
                status, error = final["status"], final.get("error")
            elif self.last_epoch.get(tid, 0) >= self.trials[tid].config.total_epochs:
                status, error = "completed", None
            else:
                status, error = "stopped", None  # stopped by the early-stopping scheduler
            self._summarise(tid, status, error)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._summarise(trial.config["tort_trial"], "failed", _error_text(trial), trial.error_file)

        def _summarise(self, tid: str, status: str, error: str | None, error_file: str | None = None) -> None:
            if tid in self.finished:
                return
            self.finished.add(tid)
            records = [{k: v for k, v in rec.items() if isinstance(v, (int, float)) and v == v}
                       for rec in store.epochs_of(tid).to_dict("records")]
            summary = summarize_records(status, records, error)
            summary["epochs_done"] = summary.pop("epochs")
            t0, started_at = self.started.get(tid, (time.monotonic(), _now()))
            info = self.info.get(tid, {})
            row = {**self._meta(tid), **summary, "total_epochs": self.trials[tid].config.total_epochs,
                   "elapsed_seconds": time.monotonic() - t0, "attempts": self.attempts.get(tid, 1),
                   "started_at": started_at, "finished_at": _now(),
                   "train_size": info.get("train_size"), "test_size": info.get("test_size"),
                   "parameters": info.get("parameters"), "error_file": error_file,
                   **{f"timing.{k}": info.get("timing", {}).get(k) for k in TIMING_KEYS}}
            store.upsert(TRIALS_TABLE, [row])
            display.trial_finished(tid, status)
            if tracker is not None:
                tracker.finish(tid, {k: v for k, v in summary.items() if v is not None})

    return StoreCallback()


# ---------------------------------------------------------------------------------------------

@dataclass
class TrialOutcome:
    id: str
    label: str
    status: str  # completed | failed | stopped | skipped (done before) | not run (interrupted)
    epochs_done: int = 0
    total_epochs: int = 0
    final_test_top1: float | None = None
    final_knn_top1: float | None = None
    wall_seconds: float | None = None
    error: str | None = None


@dataclass
class SweepOutcome:
    sweep: str
    results_dir: Path
    trials: list[TrialOutcome]
    wall_seconds: float
    interrupted: bool = False
    # Driver phases (seconds): ray_init (0 when a session was already up), setup (store, W&B,
    # Tuner), tune (Tuner.fit: every trial), shutdown (Ray, when this call started it).
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out


def _state_path(results: Path, sweep: str) -> Path:
    return results / STATE_DIR / f"{sweep}.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_state(plan: SweepPlan, resume: bool, force: bool) -> None:
    path = _state_path(plan.results_dir, plan.spec.name)
    if not path.exists():
        return
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {}
    if state.get("host") == socket.gethostname() and isinstance(state.get("pid"), int) \
            and state["pid"] != os.getpid() and _pid_alive(state["pid"]):
        raise ConfigError(f"{plan.results_dir}: sweep '{plan.spec.name}' is already running (pid {state['pid']}); "
                          f"wait for it or stop it first")
    if not (resume or force):
        n = len(plan.trials)
        raise ConfigError(f"{plan.results_dir}: sweep '{plan.spec.name}' was interrupted ({n - len(plan.to_run)} of "
                          f"{n} trials complete); rerun with --resume to run only the missing trials, "
                          f"or --force to recompute all")


def _resolve_resources(spec: SweepSpec, gpus_per_trial: float | None, cpus_per_trial: float | None,
                       local: bool, console: Console | None) -> tuple[float, float]:
    import ray

    cluster = ray.cluster_resources()
    total_gpus, total_cpus = float(cluster.get("GPU", 0)), float(cluster.get("CPU", 1))
    gpus = gpus_per_trial if gpus_per_trial is not None else spec.resources.gpus
    if gpus == "auto":
        gpus = 1.0 if total_gpus >= 1 else 0.0
    cpus = cpus_per_trial if cpus_per_trial is not None else spec.resources.cpus
    if cpus == "auto":
        cpus = float(max(1, min(4, int(total_cpus // max(total_gpus, 1))))) if gpus > 0 else 1.0
    if local and gpus > total_gpus:
        where = "--gpus-per-trial" if gpus_per_trial is not None else f"{spec.source}: resources.gpus"
        raise ConfigError(f"{where}: {gpus:g} GPU(s) per trial but this machine has {total_gpus:g}; "
                          f"use --gpus-per-trial 0 (CPU) or resources.gpus: auto")
    if local and cpus > total_cpus:
        if console is not None:
            console.print(f"note: {cpus:g} CPUs per trial requested, the machine has {total_cpus:g}; using "
                          f"{total_cpus:g}")
        cpus = total_cpus
    return float(gpus), float(cpus)


def _multi_node() -> bool:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive")) > 1


def _check_address(address: str) -> None:
    """Ray retries an unreachable GCS for minutes: probe HOST:PORT first and fail in seconds."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as e:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({e.__class__.__name__}); start one "
                          f"with `ray start --head --port=6379`, or omit --address for a local run") from None


def _check_data(plan: SweepPlan) -> None:
    """Fail before any trial if a local dataset root or init checkpoint is missing (digits is embedded)."""
    seen = set()
    for t in plan.to_run:
        init = t.config.model.init
        if init is not None and not Path(init).is_file():
            raise ConfigError(f"{plan.spec.source}: trial {t.label}: model.init: {missing_checkpoint(init)}")
        key = (t.config.data.dataset, str(t.config.data.root))
        if t.config.data.dataset == "digits" or key in seen:
            continue
        seen.add(key)
        from ..data import load_dataset  # torch: only for datasets that live in files

        try:
            load_dataset(t.config.data.dataset, t.config.data.root)
        except DataError as e:
            msg = str(e).replace("pass --data-root DIR (or set TORT_DATA_ROOT)",
                                 "set TORT_DATA_ROOT=DIR (or --set data.root=DIR)")
            raise DataError(f"{plan.spec.source}: {msg}") from None


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
    """
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    plan = spec if isinstance(spec, SweepPlan) else plan_sweep(spec, profile, sets, results_dir, force)
    force = force or plan.force
    results = plan.results_dir
    store = ResultStore(results)
    t_start = time.monotonic()
    _check_state(plan, resume, force)
    if address is None:
        _check_data(plan)

    runs_root = results / RUNS_DIR
    members = [{"sweep": plan.spec.name, "trial_id": t.id, "axes": json.dumps(t.axes, sort_keys=True),
                "label": t.label, "seed": t.seed, "dataset": t.dataset, "spec": plan.spec.source,
                "added_at": _now()} for t in plan.trials]
    if not plan.to_run:
        store.upsert(MEMBERS_TABLE, members)
        return _outcome(plan, store, time.monotonic() - t_start, interrupted=False)

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Epoch records omit test_top1 between evaluations; ASHA skips such results by itself.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # The store is the log: Tune's own CSV/JSON/TensorBoard loggers would only duplicate it.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # One checkpoint per epoch is the point here, not a misconfiguration to warn about.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    from ray import tune

    started_ray = False
    timing: dict[str, float] = {}
    t_ray = time.monotonic()
    if not ray.is_initialized():
        if address is not None:
            _check_address(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            if address is None:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--address {address}: cannot join a Ray cluster ({first}); start one with "
                              f"`ray start --head`, or omit --address for a local run") from None
        started_ray = True
    timing["ray_init_seconds"] = time.monotonic() - t_ray
    tracker = None
    display = None
    outcome = None
    try:
        gpus, cpus = _resolve_resources(plan.spec, gpus_per_trial, cpus_per_trial, local=address is None,
                                        console=console)
        # Nothing in the store changes before this point: bad input leaves it as it was.
        if force:
            store.forget([t.id for t in plan.to_run])
            for t in plan.to_run:
                shutil.rmtree(runs_root / t.id, ignore_errors=True)
        store.upsert(MEMBERS_TABLE, members)
        for t in plan.to_run:
            d = runs_root / t.id
            d.mkdir(parents=True, exist_ok=True)
            (d / "config.yaml").write_text(yaml.safe_dump(t.config.model_dump(mode="json"), sort_keys=False))
        state_path = _state_path(results, plan.spec.name)
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
                                          "trials": [t.id for t in plan.to_run]}))
        concurrency = max_concurrent or plan.spec.max_concurrent
        if wandb:
            from ..tracking import WandbTracker

            tracker = WandbTracker(results, plan.spec.name)
        display = _display(plan, concurrency, console, progress)
        meta_common = git_info()
        callback = _make_callback(plan, store, tracker, display, meta_common)
        payload = {"configs": {t.id: t.config.model_dump(mode="json") for t in plan.to_run},
                   "runs_root": str(runs_root), "cpus": cpus, "gpus": gpus, "versions": package_versions(),
                   # Tune keeps a copy of each epoch checkpoint for a retry on another node; on one
                   # node the trial's own checkpoint serves, so no copy is made.
                   "tune_checkpoints": _multi_node()}
        trainable = tune.with_resources(tune.with_parameters(_train_trial, payload=payload),
                                        {"cpu": cpus, "gpu": gpus})
        scheduler = None
        es = plan.spec.early_stop
        if es is not None:
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="epoch", metric=es.metric, mode=es.mode,
                                      max_t=max(t.config.total_epochs for t in plan.to_run),
                                      grace_period=es.grace_period, reduction_factor=es.reduction_factor,
                                      stop_last_trials=False)
        storage_path = Path(storage).expanduser().resolve() if storage else results / RAY_DIR
        name = f"{plan.spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        tuner = tune.Tuner(
            trainable,
            param_space={"tort_trial": tune.grid_search([t.id for t in plan.to_run])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=concurrency, scheduler=scheduler,
                # Same resources for every trial: the next trial runs in the same worker process,
                # without re-importing torch/timm or reloading the dataset (see _train_trial).
                reuse_actors=reuse_actors,
                trial_name_creator=lambda tr: tr.config["tort_trial"],
                trial_dirname_creator=lambda tr: tr.config["tort_trial"]),
            run_config=tune.RunConfig(
                name=name, storage_path=str(storage_path), verbose=0, callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=plan.spec.retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        display.start()
        # Tune logs every trial failure with its traceback and complains about the loggers tort
        # turned off; the store and the final table carry the error, Ray's error.txt the traceback.
        quiet = [logging.getLogger(n) for n in ("ray.tune.execution.tune_controller", "ray.tune.tune",
                                                 "ray.tune.analysis.experiment_analysis")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.CRITICAL)
        t_fit = time.monotonic()
        timing["setup_seconds"] = t_fit - t_ray - timing["ray_init_seconds"]
        try:
            tuner.fit()
        finally:
            timing["tune_seconds"] = time.monotonic() - t_fit
            for q, level in zip(quiet, levels):
                q.setLevel(level)
            display.stop()
            if not console.is_terminal:
                console.line()
        finished = callback.finished
        # A finished trial's weights stay in runs/<id>/checkpoint.pt; Tune's copy only served
        # retries, and at ViT-B scale it is gigabytes per trial.
        for tid in finished:
            for ckpt in (storage_path / name / tid).glob("checkpoint_*"):
                shutil.rmtree(ckpt, ignore_errors=True)
        interrupted = any(t.id not in finished for t in plan.to_run)
        if not interrupted:
            state_path.unlink(missing_ok=True)
        outcome = _outcome(plan, store, time.monotonic() - t_start, interrupted=interrupted)
    finally:
        if tracker is not None:
            tracker.close()
        t_end = time.monotonic()
        if started_ray:
            ray.shutdown()
        timing["shutdown_seconds"] = time.monotonic() - t_end
    outcome.timing = timing
    outcome.wall_seconds = time.monotonic() - t_start
    return outcome


def _display(plan: SweepPlan, concurrency: int | None, console: Console, live: bool):
    from .display import SweepDisplay

    rows = [(t.id, t.label, t.config.total_epochs) for t in plan.to_run]
    return SweepDisplay(plan.spec.name, rows, skipped=len(plan.skipped), max_concurrent=concurrency,
                        console=console, live=live)


def _outcome(plan: SweepPlan, store: ResultStore, wall: float, interrupted: bool) -> SweepOutcome:
    trials = store.read(TRIALS_TABLE)
    by_id = {r["trial_id"]: r for r in trials.to_dict("records")} if not trials.empty else {}
    skipped = {t.id for t in plan.skipped}
    out = []
    for t in plan.trials:
        r = by_id.get(t.id)
        if r is None:
            out.append(TrialOutcome(t.id, t.label, "not run", total_epochs=t.config.total_epochs))
            continue

        def num(key: str) -> float | None:
            v = r.get(key)
            return None if v is None or v != v else float(v)

        status = "skipped" if t.id in skipped else str(r.get("status"))
        err = r.get("error")
        out.append(TrialOutcome(t.id, t.label, status, int(num("epochs_done") or 0), t.config.total_epochs,
                                num("final_test_top1"), num("final_knn_top1"), num("wall_seconds"),
                                err if isinstance(err, str) and err else None))
    return SweepOutcome(plan.spec.name, plan.results_dir, out, wall, interrupted)
