"""What produced a trial's numbers: git commit and package versions (driver), hardware (worker)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

VERSION_PACKAGES = ("tort", "torch", "timm", "ray", "numpy", "torchvision")


def now() -> str:
    """UTC time, ISO 8601 to the millisecond: the store's timestamps."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
    for pkg in VERSION_PACKAGES:
        try:
            out[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[f"version.{pkg}"] = None
    return out


def hardware(device_name: str, cpus: float, gpus: float) -> dict[str, Any]:
    """`hw.*` of this attempt, on the worker that runs it (placement is done by then)."""
    import ray
    import torch

    from ..trainer import resolve_device

    device = resolve_device(device_name)
    return {"hw.host": socket.gethostname(), "hw.device": device.type,
            "hw.gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "hw.cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "hw.ray_gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
            "hw.cpus": float(cpus), "hw.gpus": float(gpus), "hw.torch_threads": torch.get_num_threads(),
            "hw.cpu_count": os.cpu_count(), "hw.pid": os.getpid(), "hw.started_at": now(),
            "hw.ray_node": ray.get_runtime_context().get_node_id()}
