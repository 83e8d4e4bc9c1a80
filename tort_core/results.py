"""Result files of `tort train`: the per-run metric recorder and summary (atomic writes: store.py).

Every write goes to a temporary file in the same directory and is renamed into place, so a run
killed at any moment leaves either the previous complete file or the new complete file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .store import write_json_atomic, write_parquet_atomic
from .trainer import Callback, RunResult


class ParquetRecorder(Callback):
    """Writes `metrics.parquet` (one row per epoch, with `meta` columns) after every epoch."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.rows: list[dict[str, Any]] = []

    def on_fit_start(self, cfg, info) -> None:
        # Resuming: the checkpoint's records are the run's history, whatever the file says (a run
        # killed between its checkpoint and this file's write left the file an epoch behind).
        self.rows = [{**self.meta, **record} for record in info.get("records", [])]
        if self.rows or self.path.exists():
            write_parquet_atomic(pd.DataFrame(self.rows), self.path)

    def on_epoch_end(self, record, checkpoint) -> None:
        self.rows.append({**self.meta, **record})
        write_parquet_atomic(pd.DataFrame(self.rows), self.path)


class SummaryWriter(Callback):
    """Writes `summary.json`: status, error, final and best metrics."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta

    def on_fit_end(self, result: RunResult) -> None:
        write_json_atomic(summarize(result, self.meta), self.path)


def summarize(result: RunResult, meta: dict[str, Any]) -> dict[str, Any]:
    return summarize_records(result.status, result.records, result.error, meta)


# The sweep results store lives in `store.py` (pandas only, no torch: cheap to import for analysis);
# these names are its public API.
from .store import (EPOCHS_TABLE, MEMBERS_TABLE, TRIALS_TABLE, ResultStore,  # noqa: E402,F401
                    export_parquet, load_epochs, load_members, load_trials, read_table, summarize_records)
