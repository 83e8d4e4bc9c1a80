"""The benchmark script works: every mode runs on the tiny CPU variant and reports positive
numbers. Correctness of the script only; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.common import Row
from benchmarks.step import compare_losses
from benchmarks.syncs import SyncSpy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    import benchmarks.bench

    return benchmarks.bench


@pytest.fixture(scope="module")
def tiny_run(bench, tmp_path_factory):
    """Both recipes through step, pipeline, e2e and syncs, in this process (imports are the slow part)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    runs = out.parent / "runs"  # e2e's run directories (checkpoints), not the repository's results/
    threads = torch.get_num_threads()
    try:
        code = bench.main(["--tiny", "--recipe", "both", "--mode", "step,pipeline,e2e,syncs", "--steps", "2",
                           "--images", "16", "--breakdown-images", "2", "--threads", "1", "--json", str(out),
                           "--checkpoint-dir", str(runs)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return json.loads(out.read_text())


def rows(result, recipe, mode):
    return [r for r in result["rows"] if r["recipe"] == recipe and r["mode"] == mode]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["tort", "sota"])
def test_step_pipeline_and_e2e_report_positive_throughput(tiny_run, recipe):
    for mode in ("step", "e2e"):
        (row,) = rows(tiny_run, recipe, mode)
        assert row["variant"] == "eager"
        assert row["samples_per_s"] > 0
        assert row["tflops"] > 0  # FLOPs were counted, so achieved FLOP/s is known
        assert row["mfu"] is None  # no peak given on a CPU
        assert row["peak_mem_mb"] > 0
    (step,) = rows(tiny_run, recipe, "step")
    assert len(step["extra"]["losses"]) == 2 and all(x > 0 for x in step["extra"]["losses"])  # first, last
    (e2e,) = rows(tiny_run, recipe, "e2e")
    assert e2e["extra"]["checkpoint_write"] == "sync"  # auto on a CPU
    assert all(s > 0 for s in e2e["extra"]["checkpoint_seconds"])  # every epoch wrote one, as runs do
    pipeline = rows(tiny_run, recipe, "pipeline")
    loaders = [r for r in pipeline if "workers" in r["extra"]]
    assert all(r["samples_per_s"] > 0 and r["per_core"] > 0 for r in loaders)
    # All on the CPU, the worker half of augment_on=device, and its device half alone.
    assert [r["variant"] for r in pipeline] == [
        "cpu views, 0 workers", "cpu views, 1 workers", "device views (worker half), 0 workers",
        "device views (worker half), 1 workers", "device half on cpu"]
    assert pipeline[-1]["samples_per_s"] > 0
    assert tiny_run["flops_per_step"][recipe] > 0
    parts = [b for b in tiny_run["breakdown"] if b["recipe"] == recipe]
    assert parts and all(b["ms_per_image"] >= 0 for b in parts)


def test_a_compiled_step_row_says_how_far_its_losses_are_from_eager():
    eager = Row("tort", "step", "eager", extra={"losses": [8.0, 4.0], "steps_run": 12})
    compiled = Row("tort", "step", "compiled", note="2 graphs", extra={"losses": [8.0, 4.2], "steps_run": 12})
    compare_losses(compiled, eager)
    assert compiled.extra["loss_rel_gap_vs_eager"] == pytest.approx([0.0, 0.05])
    assert compiled.note == "2 graphs; loss vs eager: 0.0e+00, 5.0e-02 apart (relative)"


def test_eval_images_are_timed_through_the_loaders_and_from_the_cache(tiny_run):
    timed = rows(tiny_run, "tort", "eval images")
    assert [(r["extra"]["cache"], r["extra"]["workers"]) for r in timed] == [("off", 0), ("off", 1), ("on", 1)]
    assert all(r["samples_per_s"] > 0 and r["seconds"] > 0 for r in timed)
    assert rows(tiny_run, "sota", "eval images") == []  # the same images for both recipes: timed once


def test_the_breakdown_names_every_view_and_operation(tiny_run):
    parts = [b["part"] for b in tiny_run["breakdown"] if b["recipe"] == "tort"]
    assert parts == ["decode", "global 1", "global 2", "masked", "local ×2"]
    ops = {b["op"] for b in tiny_run["breakdown_ops"] if b["recipe"] == "tort"}
    assert {"decode", "ColorJitter", "RandomResizedCrop", "MaskErase"} <= ops
    for recipe in ("tort", "sota"):
        shares = [b["share"] for b in tiny_run["breakdown_ops"] if b["recipe"] == recipe]
        assert sum(shares) == pytest.approx(1.0)


@pytest.mark.parametrize("recipe", ["tort", "sota"])
def test_the_training_step_has_no_host_sync(tiny_run, recipe):
    (row,) = rows(tiny_run, recipe, "syncs")
    assert row["extra"]["error"] is None
    assert row["extra"]["syncs"] == []


def test_the_spy_finds_syncs_and_ignores_host_only_scalars():
    x = torch.randn(3, 4, device="meta")
    with SyncSpy() as spy:
        x.sum().item()  # scalar read
        x[x > 0].mean()  # data-dependent shape
        x.cpu()  # device → host
        torch.ones(2).to("meta")  # host → device: not a sync, listed apart
        torch.tensor(3.0).item()  # an optimiser's CPU step counter: host only
    kinds = [s.kind for s in spy.syncs]
    assert kinds == ["scalar read (.item/float/bool)", "data-dependent shape", "device→host copy"]
    assert all("test_bench.py" in s.where for s in spy.syncs)
    assert len(spy.h2d) == 1


@pytest.mark.slow
def test_the_startup_mode_times_a_fresh_process_and_writes_json(bench, tmp_path, capsys):
    out = tmp_path / "startup.json"
    assert bench.main(["--tiny", "--recipe", "sota", "--mode", "startup", "--json", str(out)]) == 0
    cap = capsys.readouterr()
    assert "startup" in cap.out and "sota startup" in cap.err  # the table, and the row as it was measured
    result = json.loads(out.read_text())
    assert result["partial"] is False
    (row,) = result["rows"]
    assert row["mode"] == "startup" and row["seconds"] > 0
    assert all(row["extra"][k] >= 0 for k in ("interpreter", "torch", "tort_core+timm", "dataset", "model"))


@pytest.mark.slow
def test_the_checkpoint_mode_times_every_writer_and_cleans_up(bench, tmp_path):
    out = tmp_path / "checkpoint.json"
    assert bench.main(["--tiny", "--recipe", "tort", "--mode", "checkpoint", "--checkpoint-dir", str(tmp_path / "w"),
                       "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["sync", "background", "dcp"]
    for row in rows:
        assert row["extra"]["bytes"] > 0 and row["seconds"] > 0, row["note"]
        stalls, totals = row["extra"]["stall_seconds"], row["extra"]["total_seconds"]
        assert len(stalls) == len(totals) == 2 and all(0 < s <= t for s, t in zip(stalls, totals))
    assert all(r > 0 for row in rows[1:] for r in row["extra"]["python_rate_ratio"])  # measured, not judged here
    assert list((tmp_path / "w").iterdir()) == []  # the scratch folder is gone


def test_a_run_cut_off_midway_leaves_the_rows_it_finished(bench, tmp_path, monkeypatch):
    # As when a booked GPU's time limit stops a phase: the first recipe's row is in the JSON already.
    calls = []

    def startup(recipe, profile, overrides):
        calls.append(recipe)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return Row(recipe, "startup", seconds=1.0, note="stand-in")

    monkeypatch.setattr(bench, "bench_startup", startup)
    out = tmp_path / "cut.json"
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--tiny", "--recipe", "both", "--mode", "startup", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["partial"] is True and [r["recipe"] for r in result["rows"]] == ["tort"]


def test_a_bad_mode_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["--mode", "stepp"])
    assert exc.value.code == 2
    assert "stepp" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
def test_the_sweep_mode_runs_a_real_sweep_and_accounts_for_its_time(bench, tmp_path):
    """--mode sweep: a real 8-trial sweep (tiny trials) on a local Ray in a fresh process; the
    numbers come from the store. Structure and sanity only, no timing threshold."""
    out = tmp_path / "sweep.json"
    code = bench.main(["--tiny", "--recipe", "tort", "--mode", "sweep", "--json", str(out)])
    assert code == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["mode"], row["variant"]) == ("sweep", "reuse") and row["seconds"] > 0, row["note"]
    extra = row["extra"]
    assert extra["trials"] == 8 and extra["status"] == {"completed": 8}
    assert 1 <= extra["slots"] <= 8
    assert 0 < extra["train_fraction"] < extra["train_eval_fraction"] <= 1
    shares = extra["train_eval_fraction"] + extra["trial_overhead_fraction"] + extra["outside_trials_fraction"]
    assert extra["trial_overhead_fraction"] > 0 and 0 < extra["outside_trials_fraction"] < 1
    assert shares == pytest.approx(1.0)  # wall × slots is fully accounted for
    assert 0 < extra["train_seconds"] < extra["wall"] * extra["slots"]
    fresh, reused = extra["per_trial"]["fresh"], extra["per_trial"]["reused"]
    assert fresh["trials"] >= 1 and reused["trials"] >= 1 and fresh["trials"] + reused["trials"] == 8  # reuse
    for part in (fresh, reused):
        assert all(part[k] >= 0 for k in ("overhead_seconds", "import", "data", "build", "report"))
    phases = extra["phases"]
    assert all(phases[k] > 0 for k in ("driver", "plan", "ray_init", "until_first_trial", "tail"))
    assert phases["until_first_trial"] > phases["ray_init"]


@pytest.mark.slow
def test_the_script_runs_as_documented(tmp_path):
    # `python benchmarks/bench.py` from anywhere, without the repository on PYTHONPATH beforehand.
    out = tmp_path / "syncs.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--tiny", "--recipe", "sota",
                           "--mode", "syncs", "--json", str(out)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["mode"] == "syncs" and row["extra"]["syncs"] == []
