"""docs/evidence/ is reproducible: its report's tables come from its committed store alone."""
from pathlib import Path

import pandas as pd
import pytest

EVIDENCE = Path(__file__).resolve().parents[2] / "docs" / "evidence"
TABLES = EVIDENCE / "report" / "tables"


@pytest.mark.slow
@pytest.mark.skipif(not (EVIDENCE / "store").is_dir(), reason="no committed evidence store")
def test_the_committed_report_tables_regenerate_from_the_committed_store(tmp_path):
    from analysis.load import load_store
    from analysis.report import build_report

    committed = sorted(TABLES.glob("*.csv"))
    assert committed, "the evidence report has no tables"
    res = build_report(load_store(EVIDENCE / "store"), tmp_path, baseline=["sota", "augreg"], method="tort")
    fresh = {p.name for p in (tmp_path / "tables").glob("*.csv")}
    assert {p.name for p in committed} == fresh
    for path in committed:
        want, got = pd.read_csv(path), pd.read_csv(tmp_path / "tables" / path.name)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-12, obj=path.name)


def test_the_committed_store_names_no_machine_paths():
    if not (EVIDENCE / "store").is_dir():
        pytest.skip("no committed evidence store")
    for path in (EVIDENCE / "store").glob("*.parquet"):
        table = pd.read_parquet(path)
        for col in table.columns:
            if table[col].dtype == object:
                text = " ".join(map(str, table[col].dropna().unique()))
                assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text, (path.name, col)
