"""End to end on CPU: a demo ablation sweep, `tort compare --profile demo` (reusing the sweep's
default-valued trials), then `tort report` — through the real CLI, Ray and the Parquet store."""

from __future__ import annotations

import sys
import time

import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TINY = ["--set", "epochs=2", "--set", "optim.warmup_epochs=0", "--set", "optim.cooldown_epochs=0",
        "--set", "views.n_local=2", "--set", "batch_size=16", "--set", "data.train_limit=96",
        "--set", "data.test_limit=64"]


def tort(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the `tort` entry point in-process (one Ray session serves every command)."""
    import cli

    monkeypatch.setattr(sys, "argv", ["tort", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    # "local": a fresh instance, never a cluster another process on this machine started
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.timeout(400)
def test_sweep_compare_report(tmp_path, monkeypatch, capsys, ray_session):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    spec = tmp_path / "tt_demo.yaml"
    spec.write_text("name: tt_demo\nrecipe: tort\nprofile: demo\nseeds: [0]\n"
                    "axes:\n  loss.teacher_temp: [0.02, 0.04]\n")
    t0 = time.monotonic()
    code, out, err = tort(monkeypatch, capsys, "sweep", str(spec), "--profile", "demo", *TINY,
                          "--results", str(results), "--no-wandb", "--no-progress")
    assert code == 0, err
    t_sweep = time.monotonic() - t0

    code, out, err = tort(monkeypatch, capsys, "compare", "--profile", "demo", "--seeds", "2", *TINY,
                          "--results", str(results), "--out", str(tmp_path / "reports"), "--no-progress")
    assert code == 0, err
    t_compare = time.monotonic() - t0 - t_sweep
    # 4 trials planned; tort seed 0 at the default teacher temperature came from the ablation sweep
    assert "4 trials, 1 reused from the store, 3 run now" in err
    assert "digits — scratch (chance 10.00%)" in out and "primary" in out and "Welch" in out
    assert "settings: profile: demo" in out and "runs per arm" in out
    (folder,) = (tmp_path / "reports").glob("compare-tort-vs-sota-demo-scratch-*")
    assert folder.name.endswith("-digits-seeds0_1")
    assert "| final test top-1 (%) — primary (Welch t) |" in (folder / "compare.md").read_text()
    table = pd.read_csv(folder / "compare_table.csv")
    assert set(table["metric"]) == {"final_test_top1", "final_knn_top1"}
    assert (table["n_baseline"] == 2).all() and (table["n_method"] == 2).all()
    assert table["method_mean"].between(0, 100).all()  # real accuracies from the store, in percent
    assert (folder / "compare.md").stat().st_size > 0 and (folder / "curves_scratch_test_top1.png").exists()

    # Running it again trains nothing and reaches the same numbers.
    code, out, err = tort(monkeypatch, capsys, "compare", "--profile", "demo", "--seeds", "2", *TINY,
                          "--results", str(results), "--out", str(tmp_path / "reports"), "--no-progress")
    assert code == 0 and "4 reused from the store, 0 run now" in err
    again = pd.read_csv(folder / "compare_table.csv")
    pd.testing.assert_series_equal(again["method_mean"], table["method_mean"])

    code, out, err = tort(monkeypatch, capsys, "report", "--results", str(results), "--out",
                          str(tmp_path / "reports"))
    assert code == 0, err
    html = (tmp_path / "reports" / "index.html").read_text()
    for section in ("Store status", "tort vs sota", "Ablations", "loss.teacher_temp — sweep tt_demo",
                    "Thesis claims vs data", "Provenance", "data:image/png;base64,"):
        assert section in html, section
    figures = {p.name for p in (tmp_path / "reports" / "figures").iterdir()}
    assert {"ablation_tt_demo.png", "ablation_tt_demo.svg"} <= figures
    assert any(n.endswith("curves_scratch_test_top1.svg") for n in figures)
    claims = pd.read_csv(tmp_path / "reports" / "tables" / "claims.csv")
    tt = claims[claims["key"] == "loss.teacher_temp"].iloc[0]
    assert tt["verdict"] == "not comparable (profile demo)"  # a tiny demo model does not test a thesis claim
    assert tt["verdict on this data"] == "insufficient data"  # one seed per value: nothing can be tested
    prov = pd.read_csv(tmp_path / "reports" / "tables" / "provenance.csv")
    assert "git.commit" in set(prov["field"]) and "version.torch" in set(prov["field"])
    print(f"sweep {t_sweep:.0f}s, compare {t_compare:.0f}s", file=sys.stderr)
