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
