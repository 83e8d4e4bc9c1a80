"""The store mode of the benchmarks runs its small case: a 1,000-row synthetic store is built in
the layout a sweep writes, and its report cost and load are measured (the curve's first point)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import store as store_bench  # noqa: E402  (benchmarks/store.py)


@pytest.mark.slow
def test_the_store_mode_measures_a_small_store(tmp_path):
    rows = store_bench.run([1000], report=False)
    (row,) = rows
    assert row["epoch_rows"] == 1000 and row["disk_mb"] > 0
    assert row["report_ms_median"] > 0 and row["report_ms_max"] >= row["report_ms_median"]
    assert (row["loaded_trials"], row["loaded_epoch_rows"]) == (11, 1050)  # 10 built + the reporting one
    assert row["load_seconds"] > 0 and row["load_peak_rss_mb"] > row["rss_before_load_mb"]
