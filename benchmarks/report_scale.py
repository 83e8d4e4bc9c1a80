"""How long `tort report`'s analysis takes on a large synthetic store, and its peak memory.

    python benchmarks/report_scale.py --trials 1000 --epochs 100

Builds a store in memory with the schema `tort sweep` writes (tests/analysis/synthetic_store.py):
a comparison sweep (tort vs sota over four datasets) and the four "no effect" ablation sweeps,
scaled by seeds to about --trials trials with --epochs epochs each, then times Store.from_frames
(the per-trial summaries) and build_report (statistics, figures, HTML) separately. Reading the
Parquet files (`load_store`) is the store's part and is not timed here.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "analysis")]

DATASETS = ("flowers102", "fgvc_aircraft", "stanford_cars", "oxford_pet")
ABLATIONS = {"loss.label_smoothing": [0.0, 0.1], "views.rot_prob": [0.5, 1.0],
             "optim.weight_decay": [0.0, 0.04, 0.2, 0.4], "optim.min_lr": [1e-6, 1e-8, 0.0]}


def specs(trials: int, epochs: int) -> list[dict]:
    arms = 2 * len(DATASETS) + sum(len(v) for v in ABLATIONS.values()) * len(DATASETS)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=100)
    args = p.parse_args()
    from synthetic_store import make_frames

    from analysis.load import Store
    from analysis.report import build_report

    sp = specs(args.trials, args.epochs)
    t0 = time.perf_counter()
    epochs, trials = make_frames(sp)
    t1 = time.perf_counter()
    store = Store.from_frames(epochs, trials)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        res = build_report(store, out)
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(store.trials)} trials × {args.epochs} epochs ({len(store.epochs)} epoch rows): "
          f"building the frames {t1 - t0:.1f} s (not part of a report); Store.from_frames {t2 - t1:.1f} s; "
          f"build_report {t3 - t2:.1f} s ({len(res.figures) // 2} figures, {len(res.tables)} tables); "
          f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
