"""The measurements behind the store's engine (docs/store.md): what one epoch report costs and
what reading every epoch row back costs, at 1 k, 100 k and 1 M rows, for each candidate engine.

    python benchmarks/store_engines.py [--sizes 1000,100000,1000000] [--engines ...] [--json out.json]

Each (engine, size) runs in a fresh process, so its peak RSS is its own. Engines:

    rewrite   today's layout until 2026-12: one Parquet file per table, rewritten whole per report
    parts     partitioned Parquet: one small part file per report, compacted into segments
    sqlite    SQLite in WAL mode, one transaction per report (synchronous=NORMAL)
    duckdb    DuckDB, one transaction per report (only if the duckdb package is importable)

Rows have the epochs table's shape after the store change: trial id, epoch and 20 float metrics
(configuration lives once per trial, in the trials table).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("loss", "loss_distill", "loss_supervised", "loss_rotation", "test_top1", "knn_top1", "train_top1", "lr",
           "momentum", "teacher_temp", "grad_norm", "step", "samples_per_s", "train_seconds", "eval_seconds",
           "epoch_seconds", "checkpoint_seconds", "peak_mem_mb", "weight_decay", "data_seconds")
EPOCHS_PER_TRIAL = 100
REPORTS = 40  # timed single-epoch reports per (engine, size)


def frame(rows: int, start_trial: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(start_trial)
    trial = np.arange(rows) // EPOCHS_PER_TRIAL + start_trial
    data = {"trial_id": [f"{t:012x}" for t in trial], "epoch": (np.arange(rows) % EPOCHS_PER_TRIAL + 1).astype("int64")}
    for m in METRICS:
        data[m] = rng.random(rows)
    return pd.DataFrame(data)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- engines: fill(root, n), report(root, i) (one epoch row), read(root) -> rows --------------------

def _parquet_write(df, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Rewrite:
    def fill(self, root: Path, n: int) -> None:
        _parquet_write(frame(n), root / "epochs.parquet")

    def report(self, root: Path, i: int) -> None:
        import pandas as pd

        old = pd.read_parquet(root / "epochs.parquet")
        _parquet_write(pd.concat([old, frame(1, 10**9 + i)], ignore_index=True), root / "epochs.parquet")

    def read(self, root: Path) -> int:
        import pandas as pd

        return len(pd.read_parquet(root / "epochs.parquet"))


class Parts:
    SEGMENT = 100_000

    def fill(self, root: Path, n: int) -> None:
        (root / "epochs").mkdir()
        for k, start in enumerate(range(0, n, self.SEGMENT)):
            rows = min(self.SEGMENT, n - start)
            _parquet_write(frame(rows, start // EPOCHS_PER_TRIAL), root / "epochs" / f"seg-{k:06d}.parquet")

    def report(self, root: Path, i: int) -> None:
        _parquet_write(frame(1, 10**9 + i), root / "epochs" / f"part-{i:09d}.parquet")

    def read(self, root: Path) -> int:
        import pyarrow.dataset as ds

        return ds.dataset(root / "epochs", format="parquet").to_table().to_pandas().shape[0]


class Sqlite:
    def _connect(self, root: Path):
        import sqlite3

        con = sqlite3.connect(root / "store.db", timeout=30, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def fill(self, root: Path, n: int) -> None:
        con = self._connect(root)
        cols = ", ".join(f'"{m}" REAL' for m in METRICS)
        con.execute(f"CREATE TABLE epochs (trial_id TEXT, epoch INTEGER, {cols}, PRIMARY KEY (trial_id, epoch))")
        df = frame(n)
        marks = ", ".join("?" * (2 + len(METRICS)))
        con.execute("BEGIN")
        con.executemany(f"INSERT INTO epochs VALUES ({marks})", df.itertuples(index=False, name=None))
        con.execute("COMMIT")
        con.close()

    def report(self, root: Path, i: int) -> None:
        con = getattr(self, "con", None) or self._connect(root)
        self.con = con
        row = next(frame(1, 10**9 + i).itertuples(index=False, name=None))
        marks = ", ".join("?" * len(row))
        con.execute("BEGIN IMMEDIATE")
        con.execute(f"INSERT OR IGNORE INTO epochs VALUES ({marks})", row)
        con.execute("COMMIT")

    def read(self, root: Path) -> int:
        import pandas as pd

        con = self._connect(root)
        chunks = list(pd.read_sql_query("SELECT * FROM epochs", con, chunksize=100_000))
        return len(pd.concat(chunks, ignore_index=True))


class Duck:
    def fill(self, root: Path, n: int) -> None:
        import duckdb

        df = frame(n)  # noqa: F841 (read by name in the SQL below)
        con = duckdb.connect(str(root / "store.duckdb"))
        con.execute("CREATE TABLE epochs AS SELECT * FROM df")
        con.close()

    def report(self, root: Path, i: int) -> None:
        import duckdb

        con = getattr(self, "con", None) or duckdb.connect(str(root / "store.duckdb"))
        self.con = con
        row = frame(1, 10**9 + i)  # noqa: F841
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO epochs SELECT * FROM row")
        con.execute("COMMIT")
        con.execute("CHECKPOINT") if i % 1000 == 999 else None

    def read(self, root: Path) -> int:
        import duckdb

        con = duckdb.connect(str(root / "store.duckdb"), read_only=True)
        return len(con.execute("SELECT * FROM epochs").df())


ENGINES = {"rewrite": Rewrite, "parts": Parts, "sqlite": Sqlite, "duckdb": Duck}


def measure(engine: str, size: int) -> dict:
    """One engine at one size, in this process."""
    import statistics

    eng = ENGINES[engine]()
    with tempfile.TemporaryDirectory(prefix="tort-store-engines-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        eng.fill(root, size)
        fill = time.perf_counter() - t
        reports = REPORTS if engine != "rewrite" or size <= 100_000 else 5
        costs = []
        for i in range(reports):
            t = time.perf_counter()
            eng.report(root, i)
            costs.append(time.perf_counter() - t)
        if getattr(eng, "con", None) is not None:
            eng.con.close()
            eng.con = None
        base = rss_mb()
        t = time.perf_counter()
        n = eng.read(root)
        read = time.perf_counter() - t
        disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return {"engine": engine, "rows": size, "fill_s": fill, "report_ms_median": 1000 * statistics.median(costs),
            "report_ms_max": 1000 * max(costs), "read_s": read, "read_rows": n, "rss_before_read_mb": base,
            "peak_rss_mb": rss_mb(), "disk_mb": disk / 2**20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("ROW " + json.dumps(measure(args.child[0], int(args.child[1]))), flush=True)
        return 0
    rows = []
    print(f"{'engine':8} {'rows':>9} {'report ms (median/max)':>24} {'read s':>8} {'peak RSS MB':>12} {'disk MB':>8}")
    for engine in args.engines.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            proc = subprocess.run([sys.executable, __file__, "--child", engine, str(size)], capture_output=True,
                                  text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")), None)
            if line is None:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{engine:8} {size:>9} failed: {err}")
                continue
            r = json.loads(line[4:])
            rows.append(r)
            print(f"{engine:8} {size:>9} {r['report_ms_median']:>12.2f} / {r['report_ms_max']:>8.2f} "
                  f"{r['read_s']:>8.2f} {r['peak_rss_mb']:>12.0f} {r['disk_mb']:>8.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
