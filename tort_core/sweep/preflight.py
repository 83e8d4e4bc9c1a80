"""Checks a sweep makes before any trial starts: another driver, the resources, the cluster's
address and the datasets. Each fails with one line (ConfigError/DataError)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from rich.console import Console

from ..config import missing_checkpoint
from ..errors import ConfigError, DataError
from .layout import state_path
from .plan import SweepPlan
from .spec import SweepSpec


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_state(plan: SweepPlan, resume: bool, force: bool) -> None:
    """Refuse to start a sweep whose driver still runs here, or that was interrupted (unless
    --resume or --force)."""
    path = state_path(plan.results_dir, plan.spec.name)
    if not path.exists():
        return
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {}
    if state.get("host") == socket.gethostname() and isinstance(state.get("pid"), int) \
            and state["pid"] != os.getpid() and pid_alive(state["pid"]):
        raise ConfigError(f"{plan.results_dir}: sweep '{plan.spec.name}' is already running (pid {state['pid']}); "
                          f"wait for it or stop it first")
    if not (resume or force):
        n = len(plan.trials)
        raise ConfigError(f"{plan.results_dir}: sweep '{plan.spec.name}' was interrupted ({n - len(plan.to_run)} of "
                          f"{n} trials complete); rerun with --resume to run only the missing trials, "
                          f"or --force to recompute all")


def resolve_resources(spec: SweepSpec, gpus_per_trial: float | None, cpus_per_trial: float | None,
                      local: bool, console: Console | None) -> tuple[float, float]:
    """(GPUs, CPUs) per trial, from the flags, else the spec, else what the cluster has."""
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


def multi_node() -> bool:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive")) > 1


def check_address(address: str) -> None:
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


def check_data(plan: SweepPlan) -> None:
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
