"""A damaged results store — the database cut short or overwritten, or a Parquet table of the
earlier layout truncated — is named in one line by every command that reads it, before anything
runs; and an unwritable --results fails before anything runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli_runner import run_main

LEGACY = Path(__file__).resolve().parents[1] / "tort_core" / "data" / "legacy_store"
SPEC = "name: s\nprofile: demo\noverrides: {epochs: 1, optim.warmup_epochs: 0, optim.cooldown_epochs: 0}\n"


def _sqlite_store(tmp_path: Path) -> Path:
    from tort_core.store import ResultStore

    results = tmp_path / "results"
    shutil.copytree(LEGACY, results)
    store = ResultStore(results)
    store.migrate()  # the earlier layout imported into store.sqlite
    store.close()
    assert (results / "store.sqlite").stat().st_size > 0
    return results


def _damage(results: Path, how: str) -> None:
    if how == "sqlite-truncated":
        db = results / "store.sqlite"
        db.write_bytes(db.read_bytes()[:5000])
    elif how == "sqlite-garbage":
        (results / "store.sqlite").write_bytes(b"not a database " * 400)
    elif how == "parquet-truncated":
        table = results / "trials" / "trials.parquet"
        table.write_bytes(table.read_bytes()[:300])


COMMANDS = {
    "report": lambda r, t: ["report", "--results", r, "--out", t / "report"],
    "compare --no-run": lambda r, t: ["compare", "--profile", "demo", "--no-run", "--results", r, "--out", t / "cmp"],
    "sweep --dry-run": lambda r, t: ["sweep", t / "s.yaml", "--results", r, "--dry-run"],
    "sweep --resume": lambda r, t: ["sweep", t / "s.yaml", "--results", r, "--resume", "--no-wandb"],
}


@pytest.mark.parametrize("how", ["sqlite-truncated", "sqlite-garbage", "parquet-truncated"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_damaged_store_is_one_line_naming_it(tmp_path, monkeypatch, capsys, how, command):
    results = _sqlite_store(tmp_path) if how.startswith("sqlite") else shutil.copytree(LEGACY, tmp_path / "results")
    _damage(results, how)
    (tmp_path / "s.yaml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, *COMMANDS[command](results, tmp_path))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and str(results) in lines[0] and "damaged" in lines[0], lines[0]
    assert not (results / "ray").exists()  # nothing started


def test_an_unwritable_results_folder_fails_before_anything_runs(readonly_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "s.yaml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, "sweep", tmp_path / "s.yaml", "--results", readonly_dir / "r",
                            "--no-wandb")
    assert code == 2 and "--results" in err and "cannot write there" in err, err
