"""`tort compare` and `tort report` on bad input: one line on stderr, exit code 2, nothing run."""

from __future__ import annotations

import sys

import pytest


def tort(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    import cli

    monkeypatch.setattr(sys, "argv", ["tort", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["report", "--results", "{tmp}/nope"], "results directory"),
    (["compare", "--no-run", "--profile", "demo", "--results", "{tmp}/nope"], "does not exist"),
    (["compare", "--profile", "demo", "--method", "tortt", "--results", "{tmp}/r"], "unknown recipe 'tortt'"),
    (["compare", "--profile", "demo", "--datasets", "flowers101", "--results", "{tmp}/r"], "unknown dataset"),
    (["compare", "--profile", "demo", "--seeds", "a,b", "--results", "{tmp}/r"], "--seeds"),
    (["compare", "--profile", "demo", "--baseline", "tort", "--results", "{tmp}/r"], "same recipe"),
    (["compare", "--profile", "demo", "--set", "recipe=sota", "--results", "{tmp}/r"], "--set recipe"),
    (["compare", "--profile", "demo", "--set", "loss.teacher_tmp=0.1", "--results", "{tmp}/r"], "teacher_tmp"),
    (["compare", "--profile", "demo", "--plan", "--results", "{tmp}/r"], "--plan-sd"),
    (["compare", "--profile", "demo", "--plan-effect", "-1", "--results", "{tmp}/r"], "--plan-effect"),
    (["compare", "--profile", "demo", "--seeds", "0", "--results", "{tmp}/r"], "at least 1 seed"),
    (["report", "--margin", "epochs=1", "--results", "{tmp}/r"], "not a 'no effect' claim"),
    (["report", "--margin", "loss.label_smoothing=abc", "--results", "{tmp}/r"], "not a number"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    code, err = tort(monkeypatch, capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # rejected before anything ran or was written


def test_report_on_an_empty_store_dir_says_so(tmp_path, monkeypatch, capsys):
    (tmp_path / "results").mkdir()
    code, err = tort(monkeypatch, capsys, "report", "--results", str(tmp_path / "results"))
    assert code == 2 and "holds no trials yet" in err


def test_plan_says_how_many_seeds_and_runs_nothing(tmp_path, monkeypatch, capsys):
    import cli

    monkeypatch.setattr(sys, "argv", ["tort", "compare", "--profile", "demo", "--plan-effect", "1", "--plan-sd", "1",
                                      "--seeds", "10", "--results", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "nothing was run" in out
    assert "digits" in out and "17" in out and "1.32" in out  # Cohen: d = 1 needs 17 per arm; 10 per arm see 1.32
    assert not (tmp_path / "r").exists()


def test_output_folders_differ_by_seeds_and_datasets():
    from tort_core.sweep.comparison import output_folder

    a = output_folder("compare-tort-vs-sota-demo-scratch", ["digits"], [0, 1, 2])
    b = output_folder("compare-tort-vs-sota-demo-scratch", ["digits"], [0, 1, 2, 3, 4])
    c = output_folder("compare-tort-vs-sota-demo-scratch", ["digits", "flowers102"], [0, 1, 2])
    assert len({a, b, c}) == 3 and a == "compare-tort-vs-sota-demo-scratch-digits-seeds0-2"
    assert output_folder("x", ["imagefolder:flowers17"], [0, 4]) == "x-imagefolder_flowers17-seeds0_4"
