"""Mode `sweep` (only when asked for): a real sweep of the demo profile as `tort sweep` runs it
(load_spec → plan_sweep → run_sweep) in a fresh driver process on a local Ray: wall time, the
training time the store records and its share of wall × concurrent trials, and where the rest
goes (driver, Ray, worker start, per-trial overhead on fresh and reused workers, shutdown).
`python -m benchmarks.sweep SPEC RESULTS REUSE` is that driver process."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import Row, child_result, run_child


# Trial length of the sweep mode: one short epoch, a few seconds of training on a CPU core (as a
# demo trial would take on a GPU), so that the orchestration around it shows.
SWEEP_TRIAL = {"epochs": 1, "optim.warmup_epochs": 0, "optim.cooldown_epochs": 0, "data.train_limit": 256,
               "data.test_limit": 128}
SWEEP_TRIAL_TINY = {**SWEEP_TRIAL, "batch_size": 16, "data.train_limit": 48, "data.test_limit": 32}


def bench_sweep(recipe: str, overrides: dict[str, Any], trials: int, reuse: bool = True, tiny: bool = False,
                length: str = "short") -> Row:
    """A real `trials`-seed sweep of the demo profile on the local Ray: wall time against the
    training time the store records, and where the rest goes (docs/performance.md).
    `length="demo"` keeps the demo profile's own trial length instead of one short epoch."""
    from tort_core.store import load_epochs, load_trials

    variant = ("reuse" if reuse else "no reuse") + (", demo length" if length == "demo" else "")
    cut = {} if length == "demo" and not tiny else SWEEP_TRIAL_TINY if tiny else SWEEP_TRIAL
    base = {**cut, **overrides}
    base.pop("device", None)  # the sweep places trials itself: a GPU per trial where there are GPUs
    with tempfile.TemporaryDirectory(prefix="tort-bench-sweep-") as tmp:
        spec = Path(tmp) / "bench_sweep.yaml"
        spec.write_text(yaml.safe_dump({"name": "bench_sweep", "recipe": recipe, "profile": "demo",
                                        "overrides": base, "seeds": trials}, sort_keys=False))
        results = Path(tmp) / "results"
        t_launch = time.time()
        proc = run_child("benchmarks.sweep", str(spec), str(results), "1" if reuse else "0")
        wall = time.time() - t_launch
        driver, why = child_result(proc, "SWEEP")
        if driver is None:
            return Row(recipe, "sweep", variant, note=f"child failed: {why}")
        rows, epochs = load_trials(results), load_epochs(results)

    stamp = lambda iso: datetime.fromisoformat(iso).timestamp()  # noqa: E731
    spans = sorted((stamp(r["started_at"]), stamp(r["finished_at"])) for r in rows.to_dict("records"))
    slots = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)  # trials running at once, at most
    train = float(epochs["train_seconds"].sum())
    evaluation = float(epochs["eval_seconds"].sum())
    per_trial = epochs.groupby("trial_id")[["train_seconds", "eval_seconds"]].sum().sum(axis=1)
    overhead = rows.set_index("trial_id")["elapsed_seconds"] - per_trial
    fresh = rows.set_index("trial_id")["timing.process_trial"] == 1

    def mean(col: str, mask) -> float | None:
        values = rows.set_index("trial_id").loc[mask, col].dropna()
        return float(values.mean()) if len(values) else None

    parts = {}
    for name, mask in (("fresh", fresh), ("reused", ~fresh)):
        parts[name] = {"trials": int(mask.sum()),
                       "overhead_seconds": float(overhead[mask].mean()) if mask.any() else None,
                       **{k: mean(f"timing.{k}_seconds", mask) for k in ("import", "data", "build", "report")}}
    first_start, last_end = spans[0][0], max(b for _, b in spans)
    phases = {"driver": driver["start"] - t_launch + driver["imports"], "plan": driver["plan"],
              "ray_init": driver["ray_init_seconds"], "setup": driver["setup_seconds"],
              "first_trial": first_start - (driver["run_start"] + driver["ray_init_seconds"] + driver["setup_seconds"]),
              "until_first_trial": first_start - t_launch, "tail": t_launch + wall - last_end,
              "shutdown": driver["shutdown_seconds"]}
    slot_time = wall * slots  # what the sweep had: every slot for the whole wall time
    in_trials = float(overhead.sum())  # in a trial (its start to its end on the driver), not train/eval
    extra = {"trials": int(len(rows)), "status": {str(k): int(v) for k, v in rows["status"].value_counts().items()},
             "slots": slots, "wall": wall, "train_seconds": train, "eval_seconds": evaluation,
             "train_fraction": train / slot_time, "train_eval_fraction": (train + evaluation) / slot_time,
             # the rest of wall × slots: overhead inside trials, and slot time outside any trial
             # (before the first trial, between trials, after the last)
             "trial_overhead_fraction": in_trials / slot_time,
             "outside_trials_fraction": 1 - float(rows["elapsed_seconds"].sum()) / slot_time,
             "phases": phases, "per_trial": parts, "reuse": reuse}
    f, r = parts["fresh"], parts["reused"]
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    pct = lambda key: f"{100 * extra[key]:.0f}%"  # noqa: E731
    note = (f"{len(rows)} trials on {slots} slots: train {train:.1f} s, eval {evaluation:.1f} s; of wall × slots "
            f"train {pct('train_fraction')}, eval {100 * (extra['train_eval_fraction'] - extra['train_fraction']):.0f}%"
            f", per-trial overhead {pct('trial_overhead_fraction')}, outside trials {pct('outside_trials_fraction')}"
            f"; until the first trial {phases['until_first_trial']:.1f} s (driver "
            f"{phases['driver']:.1f}, plan {phases['plan']:.1f}, Ray {phases['ray_init']:.1f}, set-up "
            f"{phases['setup']:.1f}, first worker {phases['first_trial']:.1f}); per trial beyond train+eval: fresh "
            f"worker {fmt(f['overhead_seconds'])} s (imports {fmt(f['import'])}, data {fmt(f['data'])}, build "
            f"{fmt(f['build'])}), reused {fmt(r['overhead_seconds'])} s (data {fmt(r['data'])}, build "
            f"{fmt(r['build'])}, reports {fmt(r['report'])}); tail {phases['tail']:.1f} s")
    return Row(recipe, "sweep", variant, seconds=wall, note=note, extra=extra)



def child(spec_path: str, results: str, reuse: bool) -> dict[str, Any]:
    """The measured driver: its import and planning seconds, and the runner's own timing."""
    t0 = time.time()
    from rich.console import Console

    from tort_core.sweep.runner import plan_sweep, run_sweep
    from tort_core.sweep.spec import load_spec
    t1 = time.time()
    plan = plan_sweep(load_spec(spec_path), results_dir=results)
    t2 = time.time()
    out = run_sweep(plan, results_dir=results, wandb=False, progress=False, reuse_actors=reuse,
                    console=Console(stderr=True, quiet=True))
    return {"start": t0, "imports": t1 - t0, "plan": t2 - t1, "run_start": t2, "run": time.time() - t2,
            **out.timing, "counts": out.counts()}


if __name__ == "__main__":
    print("SWEEP " + json.dumps(child(sys.argv[1], sys.argv[2], sys.argv[3] == "1")))
