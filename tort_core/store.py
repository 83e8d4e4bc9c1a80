"""The sweep results store: three Parquet tables written by the sweep driver, read by the analysis.

    <results>/epochs/epochs.parquet   one row per (trial_id, epoch)
    <results>/trials/trials.parquet   one row per trial_id that finished (completed/failed/stopped)
    <results>/sweeps/members.parquet  one row per (sweep, trial_id): which sweeps contain a trial

Each table is one Parquet file in its own folder, rewritten whole (temp file + fsync + rename)
under a lock: a reader, `pd.read_parquet("<results>/trials")` included, sees the old file or the
new one, never a torn one or a mix of schemas (a folder of part files would take its schema from
whichever part pyarrow reads first). Leftover temp files start with '.', which pyarrow skips.
Only the sweep driver writes here (a Tune callback), so trials on other nodes need no access.

Import cost matters (the analysis loads this): pandas only, no torch. `tort_core.results`
re-exports the same names.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

EPOCHS_TABLE = "epochs"
TRIALS_TABLE = "trials"
MEMBERS_TABLE = "sweeps"
_FILES = {EPOCHS_TABLE: "epochs/epochs.parquet", TRIALS_TABLE: "trials/trials.parquet",
          MEMBERS_TABLE: "sweeps/members.parquet"}
_KEYS = {EPOCHS_TABLE: ["trial_id", "epoch"], TRIALS_TABLE: ["trial_id"], MEMBERS_TABLE: ["sweep", "trial_id"]}


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix types (3.0 and 'x') cannot become one Arrow column: make them text."""
    for col in df.columns:
        if df[col].dtype != object:
            continue
        kind = pd.api.types.infer_dtype(df[col], skipna=True)
        if kind in ("mixed-integer-float", "integer-na"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        elif kind.startswith("mixed") or kind in ("unknown-array",):
            df[col] = [None if v is None or (isinstance(v, float) and math.isnan(v))
                       else (v if isinstance(v, str) else json.dumps(v, default=str)) for v in df[col]]
    return df


def _write_durable(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _arrow_safe(df).to_parquet(tmp, index=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultStore:
    """Read-modify-write access to the three tables, keyed so that a row is never stored twice."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self._cache: dict[str, tuple[tuple[int, int, int], pd.DataFrame]] = {}

    def path(self, table: str) -> Path:
        return self.root / _FILES[table]

    @contextlib.contextmanager
    def _locked(self):
        # Two drivers (two sweeps) may share a store: serialise their read-modify-write cycles.
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def read(self, table: str) -> pd.DataFrame:
        path = self.path(table)
        try:
            st = path.stat()
        except FileNotFoundError:
            return pd.DataFrame()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cache.get(table)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        df = pd.read_parquet(path)
        self._cache[table] = (stamp, df)
        return df

    def _replace(self, table: str, df: pd.DataFrame) -> None:
        path = self.path(table)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
            stale.unlink(missing_ok=True)
        _write_durable(df, path)
        st = path.stat()
        self._cache[table] = ((st.st_mtime_ns, st.st_size, st.st_ino), df)

    def upsert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows; a row whose key is already stored replaces it (the last write wins)."""
        if not rows:
            return
        keys = _KEYS[table]
        new = pd.DataFrame(rows)
        with self._locked():
            old = self.read(table)
            if not old.empty:
                replaced = pd.MultiIndex.from_frame(old[keys].astype(str)).isin(
                    pd.MultiIndex.from_frame(new[keys].astype(str)))
                old = old[~replaced]
            frames = [f for f in (old, new) if not f.empty]
            merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
            self._replace(table, merged)

    def forget(self, trial_ids: list[str]) -> None:
        """Drop every epoch and summary row of these trials (before recomputing them: --force)."""
        ids = set(trial_ids)
        with self._locked():
            for table in (EPOCHS_TABLE, TRIALS_TABLE):
                old = self.read(table)
                if not old.empty and old["trial_id"].isin(ids).any():
                    self._replace(table, old[~old["trial_id"].isin(ids)].reset_index(drop=True))

    def statuses(self) -> dict[str, str]:
        """trial_id → status of its summary row."""
        trials = self.read(TRIALS_TABLE)
        if trials.empty:
            return {}
        return dict(zip(trials["trial_id"].astype(str), trials["status"].astype(str)))

    def epochs_of(self, trial_id: str) -> pd.DataFrame:
        epochs = self.read(EPOCHS_TABLE)
        if epochs.empty:
            return epochs
        return epochs[epochs["trial_id"] == trial_id].sort_values("epoch")


def summarize_records(status: str, records: list[dict[str, Any]], error: str | None = None,
                      meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's summary from its epoch records: status, error, epochs, final and best metrics,
    `wall_seconds` (sum of epoch times) and mean `samples_per_s` (no torch: the sweep driver uses it)."""
    final = records[-1] if records else {}
    out: dict[str, Any] = {**(meta or {}), "status": status, "error": error, "epochs": len(records)}
    for key in ("test_top1", "knn_top1", "loss"):
        values = [r[key] for r in records if key in r]
        if values:
            out[f"final_{key}"] = final.get(key)
            out[f"best_{key}"] = min(values) if key == "loss" else max(values)
    if records:
        out["wall_seconds"] = sum(r.get("epoch_seconds", 0.0) for r in records)
        out["samples_per_s"] = sum(r.get("samples_per_s", 0.0) for r in records) / len(records)
    return out


def _with_membership(df: pd.DataFrame, results_dir: str | Path, sweep: str | None) -> pd.DataFrame:
    members = load_members(results_dir)
    if df.empty:
        return df
    if not members.empty:
        by_trial = members.groupby("trial_id")["sweep"].agg(lambda s: json.dumps(sorted(set(s)))).to_dict()
        own = df["sweep"] if "sweep" in df.columns else pd.Series([None] * len(df), index=df.index)
        df = df.copy()
        df["sweeps"] = [by_trial.get(t, json.dumps([s] if isinstance(s, str) else []))
                        for t, s in zip(df["trial_id"], own)]
    if sweep is None:
        return df
    ids = set(members.loc[members["sweep"] == sweep, "trial_id"]) if not members.empty else set()
    if "sweep" in df.columns:
        ids |= set(df.loc[df["sweep"] == sweep, "trial_id"])
    out = df[df["trial_id"].isin(ids)].copy()
    out["sweep"] = sweep
    return out.reset_index(drop=True)


def load_epochs(results_dir: str | Path, sweep: str | None = None) -> pd.DataFrame:
    """Per-epoch rows of the store at `results_dir` (empty DataFrame if there are none).

    One row per (trial_id, epoch): `sweep` (the sweep that computed it), `trial_id`, `epoch`, every
    metric of the epoch record (`loss`, `loss_<name>`, `test_top1`, `knn_top1`, `lr`, ...), every
    config key as a dotted column (`loss.teacher_temp`, `seed`, `data.dataset`, ...), `git.commit`,
    `version.<package>`, `hw.<field>`. With `sweep`, only the trials that sweep contains (including
    ones computed by another sweep), with `sweep` set to that name.
    """
    store = ResultStore(results_dir)
    return _with_membership(store.read(EPOCHS_TABLE), results_dir, sweep)


def load_trials(results_dir: str | Path, sweep: str | None = None) -> pd.DataFrame:
    """One summary row per finished trial (empty DataFrame if there are none).

    Columns: `sweep`, `sweeps` (JSON list of every sweep that contains the trial), `trial_id`,
    `status` (completed | failed | stopped), `error`, `epochs_done`, `total_epochs`,
    `final_<m>` / `best_<m>` for test_top1, knn_top1 and loss, `wall_seconds` (sum of epoch
    times), `elapsed_seconds` (trial start to end, start-up included), `samples_per_s`, `attempts`,
    `started_at`, `finished_at`, `train_size`, `test_size`, `axes` (JSON of the sweep's axis values),
    every config key, `git.*`, `version.*`, `hw.*`. `sweep` filters as in `load_epochs`.
    """
    store = ResultStore(results_dir)
    return _with_membership(store.read(TRIALS_TABLE), results_dir, sweep)


def load_members(results_dir: str | Path) -> pd.DataFrame:
    """(sweep, trial_id) rows: `axes` (JSON of the trial's axis values in that sweep), `label`,
    `seed`, `dataset`, `spec` (the spec file), `added_at`."""
    return ResultStore(results_dir).read(MEMBERS_TABLE)
