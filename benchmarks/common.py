"""What every mode shares: the result row, the live row list, the machine's description, and the
figures the modes compare against. Imports no torch at module level: the `startup` and `sweep`
modes run as child processes that time their own imports."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# The H100 targets, end to end at the thesis profile (samples/s).
TARGETS = {"tort": 520.0, "sota": 2500.0}
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' datasheets, by device-name fragment;
# the first match wins, so the more specific names come first.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0),
               ("L4", 121.0), ("A10", 125.0), ("V100", 125.0))
# --tiny: the demo profile made smaller still, so every mode finishes in seconds on a CPU.
TINY = {
    "batch_size": 8,
    "views.n_local": 2,
    "model.kwargs": {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2},
    "heads.hidden_dim": 64,
    "heads.bottleneck_dim": 32,
    "heads.out_dim": 64,
    "data.eval_batch_size": 64,
}


@dataclass
class Row:
    recipe: str
    mode: str
    variant: str = "-"  # eager | compiled for step and e2e
    batch: int = 0
    samples_per_s: float | None = None
    per_core: float | None = None  # pipeline: images per CPU-second of the processes doing the work
    tflops: float | None = None  # achieved model FLOP/s
    mfu: float | None = None
    peak_mem_mb: float | None = None
    seconds: float | None = None  # wall time of what was measured
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class LiveRows(list):
    """The rows so far. Each is printed (stderr) as it is measured and the --json file rewritten
    with "partial": true, so a run cut off by a time limit (a GPU booked for 10 minutes) still
    leaves every row it finished."""

    def __init__(self, save) -> None:
        super().__init__()
        self._save, self._t0 = save, time.perf_counter()

    def append(self, row: Row) -> None:
        self.extend([row])

    def extend(self, new) -> None:
        new = list(new)
        super().extend(new)
        for r in new:
            mfu = "" if r.mfu is None else f", MFU {100 * r.mfu:.1f}%"
            print(f"[{time.perf_counter() - self._t0:.0f} s] {r.recipe} {r.mode} {r.variant}: samples/s "
                  f"{fmt(r.samples_per_s)}{mfu}, peak MB {fmt(r.peak_mem_mb, 0)}; {r.note}", file=sys.stderr,
                  flush=True)
        self._save()


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def sync(device) -> None:
    """Wait for the device's queued work (CUDA); nothing elsewhere."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def throughput(flops_per_sample: float | None, samples_per_s: float, peak: float | None):
    """(achieved TFLOP/s, MFU) from FLOPs per sample and a rate; None where unknown."""
    if not flops_per_sample:
        return None, None
    achieved = flops_per_sample * samples_per_s / 1e12
    return achieved, (achieved / peak if peak else None)


def default_peak(device) -> float | None:
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    return next((v for key, v in PEAK_TFLOPS if key in name), None)


def environment(device) -> dict[str, Any]:
    import timm
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version(), "load_avg_start": os.getloadavg()}


def run_child(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m <module> args...` in a fresh interpreter that finds this repository's packages."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env)


def child_result(proc: subprocess.CompletedProcess, tag: str) -> tuple[dict[str, Any] | None, str]:
    """The JSON a child printed on its line starting with `tag`, or None and why not."""
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(tag + " ")), None)
    if proc.returncode or line is None:
        return None, (proc.stderr.strip().splitlines() or ["no output"])[-1]
    import json

    return json.loads(line.removeprefix(tag + " ")), ""
