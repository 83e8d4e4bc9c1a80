"""How long `tort report`'s analysis takes on a large synthetic store, and its peak memory.

    python benchmarks/report_scale.py --trials 1000 --epochs 100

Builds a store with the schema `tort sweep` writes (tests/analysis/synthetic_store.py): a
comparison sweep (tort vs sota over the four thesis datasets) and the four "no effect" ablation
sweeps, with enough seeds for about --trials trials of --epochs epochs, and saves its two tables as
Parquet. A fresh process then reads them and times Store.from_frames (the per-trial summaries)
and build_report (statistics, figures, HTML), in wall-clock and CPU seconds (on a shared machine
the CPU time is the steadier figure), with that process's peak RSS. Reading the store's own files
(`load_store`) is the store's part and is benchmarked there.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "analysis")]

DATASETS = ("flowers102", "fgvc_aircraft", "stanford_cars", "oxford_pet")
# The first value of each is the profile's default, which is also the comparison's tort trial.
ABLATIONS = {"loss.label_smoothing": [0.0, 0.1], "views.rot_prob": [0.5, 1.0],
             "optim.weight_decay": [0.04, 0.0, 0.2, 0.4], "optim.min_lr": [1e-6, 1e-8, 0.0]}


def specs(trials: int, epochs: int) -> list[dict]:
    arms = len(DATASETS) * (2 + sum(len(v) - 1 for v in ABLATIONS.values()))  # distinct configs per seed
    seeds = max(2, round(trials / arms))
    out = []
    for ds in DATASETS:
        for s in range(seeds):
            for recipe, plateau in (("tort", 40.0), ("sota", 15.0)):
                out.append({"recipe": recipe, "dataset": ds, "seed": s, "sweep": "compare-scale",
                            "axes": {"recipe": recipe}, "epochs": epochs, "plateau": plateau, "tau": epochs / 5})
            for key, values in ABLATIONS.items():
                for v in values:
                    out.append({"recipe": "tort", "dataset": ds, "seed": s, "sweep": key, "overrides": {key: v},
                                "axes": {key: v}, "epochs": epochs, "plateau": 40.0, "tau": epochs / 5})
    return out


def measure(folder: Path) -> None:
    import pandas as pd

    from analysis.load import Store
    from analysis.report import build_report

    epochs, trials = pd.read_parquet(folder / "epochs.parquet"), pd.read_parquet(folder / "trials.parquet")
    w0, c0 = time.perf_counter(), time.process_time()
    store = Store.from_frames(epochs, trials)
    w1, c1 = time.perf_counter(), time.process_time()
    res = build_report(store, folder / "report")
    w2, c2 = time.perf_counter(), time.process_time()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(store.trials)} trials × {epochs['epoch'].max()} epochs ({len(store.epochs)} epoch rows): "
          f"Store.from_frames {w1 - w0:.1f} s wall / {c1 - c0:.1f} s CPU; build_report {w2 - w1:.1f} s wall / "
          f"{c2 - c1:.1f} s CPU ({len(res.figures) // 2} figures, {len(res.tables)} tables); "
          f"peak RSS of the process {rss:.0f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the timed child process
    args = p.parse_args()
    if args.measure:
        measure(args.measure)
        return
    from synthetic_store import make_frames

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        epochs, trials = make_frames(specs(args.trials, args.epochs))
        epochs.to_parquet(folder / "epochs.parquet")
        trials.to_parquet(folder / "trials.parquet")
        del epochs, trials
        subprocess.run([sys.executable, __file__, "--measure", str(folder)], check=True)


if __name__ == "__main__":
    main()
