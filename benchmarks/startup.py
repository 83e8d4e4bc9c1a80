"""Mode `startup`: a fresh process, phase by phase: interpreter, `import torch`, tort_core and timm,
CUDA initialisation, dataset load, model build, exit. `python -m benchmarks.startup RECIPE PROFILE
OVERRIDES_JSON` is that process (what it imports is what it times, so this module imports nothing
heavy at its top)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks.common import Row, child_result, run_child

PHASES = ("interpreter", "torch", "tort_core+timm", "cuda", "dataset", "model")


def bench_startup(recipe: str, profile: str, overrides: dict[str, Any]) -> Row:
    t_launch = time.time()
    proc = run_child("benchmarks.startup", recipe, profile, json.dumps(overrides, default=str))
    total = time.time() - t_launch
    phases, why = child_result(proc, "STARTUP")
    if phases is None:
        return Row(recipe, "startup", note=f"child failed: {why}")
    phases["interpreter"] = phases.pop("start") - t_launch
    phases["exit"] = total - sum(phases[k] for k in PHASES)
    cuda = "n/a" if not phases["device"].startswith("cuda") else f"{phases['cuda']:.2f}"
    note = (f"interpreter {phases['interpreter']:.2f}, torch {phases['torch']:.2f}, tort_core+timm "
            f"{phases['tort_core+timm']:.2f}, CUDA {cuda}, dataset {phases['dataset']:.2f} "
            f"({phases['images']} images), model {phases['model']:.2f}, exit {phases['exit']:.2f} s")
    return Row(recipe, "startup", seconds=total, note=note, extra=phases)


def child(recipe: str, profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The measured process: each phase's seconds (`start`: when it began, for the interpreter's)."""
    t0 = time.time()
    import torch
    t1 = time.time()
    from tort_core.config import build_config
    from tort_core.data import load_dataset
    from tort_core.recipes import RECIPES
    from tort_core.trainer import resolve_device
    t2 = time.time()
    cfg = build_config(recipe, profile, overrides=overrides)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.init()
        torch.empty(1, device=device)
        torch.cuda.synchronize(device)
    t3 = time.time()
    data = load_dataset(cfg.data.dataset, cfg.data.root)
    n = len(data.train) + len(data.test)
    t4 = time.time()
    RECIPES.get(recipe)().build(cfg, data.num_classes, 1).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t5 = time.time()
    return {"start": t0, "torch": t1 - t0, "tort_core+timm": t2 - t1, "cuda": t3 - t2, "dataset": t4 - t3,
            "model": t5 - t4, "images": n, "device": str(device)}


if __name__ == "__main__":
    print("STARTUP " + json.dumps(child(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
