"""Store mode: what the results store costs as it grows.

    python benchmarks/store.py [--sizes 1000,100000,1000000] [--json out.json] [--no-report]

For each size (epoch rows; 100 epochs per trial, so 10, 1,000 and 10,000 trials) it builds a
synthetic store in the layout `tort sweep` writes (trial rows with every config key and the
provenance columns, epoch rows with 20 metrics, one sweep's membership), then measures, each in a
fresh process so that peak RSS is its own:

    report   one epoch report as the sweep driver makes it (ResultStore.add_epochs on a claimed
             trial), median and max of 50
    load     analysis.load.load_store(results): seconds and peak RSS
    tort report  the `tort report` command on the store: seconds and peak RSS (its child's)

`benchmarks/store_engines.py` compares the engines the store could have used.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRICS = ("loss", "loss_distill", "loss_supervised", "loss_rotation", "test_top1", "knn_top1", "train_top1", "lr",
           "momentum", "teacher_temp", "grad_norm", "step", "samples_per_s", "train_seconds", "eval_seconds",
           "epoch_seconds", "checkpoint_seconds", "peak_mem_mb", "weight_decay", "data_seconds")
EPOCHS = 100
REPORTS = 50


def build(results: Path, rows: int) -> None:
    """A synthetic store of `rows` epoch rows (rows / 100 trials, two recipes, seeds, datasets)."""
    import numpy as np
    import pandas as pd

    from tort_core.config import build_config
    from tort_core.store import EPOCHS_TABLE, MEMBERS_TABLE, TRIALS_TABLE, ResultStore

    n_trials = max(1, rows // EPOCHS)
    bases = {r: build_config(r, "demo").flat() for r in ("tort", "sota")}
    rng = np.random.default_rng(0)
    trials, members = [], []
    for i in range(n_trials):
        recipe = "tort" if i % 2 == 0 else "sota"
        tid = f"{i:012x}"
        arm = (i // 2) % max(1, n_trials // 20)  # ~10 seeds per (recipe, arm)
        flat = {**bases[recipe], "seed": i // (2 * max(1, n_trials // 20)), "loss.teacher_temp": 0.04 + 0.001 * arm,
                "data.dataset": ("digits", "flowers102", "oxford_pet")[arm % 3], "epochs": EPOCHS}
        acc = 40 + 10 * (recipe == "tort") + rng.normal(0, 2)
        trials.append({"trial_id": tid, "sweep": "bench", **flat, "axes": json.dumps({"recipe": recipe}),
                       "status": "completed", "error": None, "epochs_done": EPOCHS, "total_epochs": EPOCHS,
                       "final_test_top1": acc, "best_test_top1": acc + 1, "final_knn_top1": acc + 3,
                       "best_knn_top1": acc + 4, "final_loss": 1.0, "best_loss": 0.9, "wall_seconds": 500.0,
                       "elapsed_seconds": 520.0, "samples_per_s": 100.0, "attempts": 1, "interruptions": 0,
                       "started_at": "2026-12-07T00:00:00.000+00:00", "finished_at": "2026-12-07T00:10:00.000+00:00",
                       "train_size": 1347, "test_size": 450, "num_classes": 10, "parameters": 1_000_000,
                       "git.commit": "0" * 40, "git.dirty": False, "version.torch": "2.5.0", "version.ray": "2.60.0",
                       "hw.host": f"node{i % 4}", "hw.device": "cuda", "hw.gpu_name": "H100",
                       "hw.pid": 1000 + i, "hw.started_at": "2026-12-07T00:00:00.000+00:00",
                       **{f"timing.{k}": 1.0 for k in ("import_seconds", "data_seconds", "build_seconds")}})
        members.append({"sweep": "bench", "trial_id": tid, "axes": json.dumps({"recipe": recipe}),
                        "label": f"recipe={recipe} seed={flat['seed']}", "seed": flat["seed"],
                        "dataset": flat["data.dataset"], "spec": "bench.yaml", "added_at": "2026-12-07"})
    store = ResultStore(results)
    store.bulk_insert(TRIALS_TABLE, pd.DataFrame(trials))
    store.bulk_insert(MEMBERS_TABLE, pd.DataFrame(members))
    for start in range(0, n_trials, 1000):  # epochs in slices of 1,000 trials (100 k rows)
        ids = [t["trial_id"] for t in trials[start:start + 1000]]
        n = len(ids) * EPOCHS
        epochs = pd.DataFrame({"trial_id": np.repeat(ids, EPOCHS), "epoch": np.tile(np.arange(1, EPOCHS + 1), len(ids))})
        for m in METRICS:
            epochs[m] = rng.random(n) * (100 if m.endswith("top1") else 1)
        store.bulk_insert(EPOCHS_TABLE, epochs.iloc[: rows - start * EPOCHS] if start * EPOCHS + n > rows else epochs)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: reset at exec, unlike ru_maxrss, which a child
    inherits from the process that forked it)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_report(results: Path) -> dict:
    from tort_core.store import Owner, ResultStore

    store = ResultStore(results)
    owner = Owner.new("bench-report")
    store.claim([{"trial_id": "ffffffffffff", "sweep": "bench-report"}], owner, {"completed"})
    costs = []
    for e in range(1, REPORTS + 1):
        record = {"epoch": e, **{m: float(e) for m in METRICS}}
        t = time.perf_counter()
        store.add_epochs("ffffffffffff", [record], owner)
        costs.append(time.perf_counter() - t)
    return {"report_ms_median": 1000 * statistics.median(costs), "report_ms_max": 1000 * max(costs)}


def measure_load(results: Path) -> dict:
    base = peak_rss_mb()
    t = time.perf_counter()
    from analysis.load import load_store

    store = load_store(results)
    return {"load_seconds": time.perf_counter() - t, "load_peak_rss_mb": peak_rss_mb(), "rss_before_load_mb": base, "loaded_trials": len(store.trials),
        "loaded_epoch_rows": len(store.epochs)}


_CLI = """
import sys
sys.argv = ["tort", *sys.argv[1:]]
try:
    import cli
    cli.main()
finally:
    with open("/proc/self/status") as fh:
        hwm = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:"))
    print(f"PEAK_RSS_KB {hwm}", file=sys.stderr)
"""


def measure_cli_report(results: Path, out: Path) -> dict:
    cmd = [sys.executable, "-c", _CLI, "report", "--results", str(results), "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    lines = proc.stderr.strip().splitlines()
    peak = next((int(ln.split()[1]) / 1024 for ln in lines if ln.startswith("PEAK_RSS_KB")), None)
    last = next((ln for ln in reversed(lines) if not ln.startswith("PEAK_RSS_KB")), "")
    return {"report_cli_seconds": wall, "report_cli_peak_rss_mb": peak, "report_cli_exit": proc.returncode,
            "report_cli_last_line": last[:200]}


def _child(what: str, results: Path) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
            f"import store as b; from pathlib import Path; "
            f"print('ROW ' + json.dumps(b.measure_{what}(Path({str(results)!r}))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")), None)
    if line is None:
        return {f"{what}_error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(line[4:])


def run(sizes: list[int], report: bool = True) -> list[dict]:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="tort-bench-store-") as tmp:
            results = Path(tmp) / "results"
            t = time.perf_counter()
            build(results, size)
            row = {"epoch_rows": size, "build_seconds": time.perf_counter() - t,
                   "disk_mb": sum(f.stat().st_size for f in results.rglob("*") if f.is_file()) / 2**20}
            row.update(_child("report", results))
            row.update(_child("load", results))
            if report:
                row.update(measure_cli_report(results, Path(tmp) / "report"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="results store: report cost, load time, memory, tort report time")
    ap.add_argument("--sizes", default="1000,100000,1000000", help="epoch rows per synthetic store")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-report", action="store_true", help="skip the `tort report` measurement")
    args = ap.parse_args(argv)
    rows = run([int(s) for s in args.sizes.split(",")], report=not args.no_report)
    print(f"\n{'rows':>9} {'report ms (med/max)':>20} {'load s':>7} {'load MB':>8} {'tort report s':>14} {'MB':>6}")
    for r in rows:
        print(f"{r['epoch_rows']:>9} {r.get('report_ms_median', float('nan')):>9.2f} / {r.get('report_ms_max', float('nan')):>7.2f}"
              f" {r.get('load_seconds', float('nan')):>7.2f} {r.get('load_peak_rss_mb', float('nan')):>8.0f}"
              f" {r.get('report_cli_seconds', float('nan')):>14.1f} {r.get('report_cli_peak_rss_mb', float('nan')):>6.0f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
