"""Every usage mistake on the command line: one line on stderr, exit 2, no traceback, from the
installed command (whatever click typer brings: typer ≥ 0.2x vendors its own)."""

from __future__ import annotations

import pytest

from cli_runner import assert_one_line_error, run_tort


@pytest.mark.parametrize("args, fragments", [
    (["trian"], ["No such command 'trian'", "train"]),
    (["train", "--profil", "demo"], ["No such option: --profil", "--profile"]),
    (["train", "--epochs", "two"], ["'--epochs'", "integer"]),
    (["train", "--seed", "1e23"], ["'--seed'"]),
    (["train", "--seed", "-1"], ["'--seed'"]),
    (["sweep", "sweeps/x.yaml", "--dryrun"], ["No such option: --dryrun", "--dry-run"]),
    (["sweep"], ["Missing argument", "tort sweep --help"]),
    (["compare", "--seeds"], ["--seeds", "requires an argument"]),
    (["report", "--results"], ["--results", "requires an argument"]),
])
def test_usage_errors_are_one_line_with_exit_2(args, fragments, tmp_path):
    assert_one_line_error(run_tort(*args, cwd=tmp_path), *fragments)


def test_the_bare_command_prints_its_help():
    proc = run_tort()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Usage: tort" in proc.stdout and "train" in proc.stdout and "sweep" in proc.stdout


def test_an_error_message_with_brackets_is_printed_as_written(tmp_path):
    # rich would read "[0.5, 0.1]" as markup and drop it from the message
    proc = run_tort("config", "--profile", "demo", "--set", "views.mask_scale=[0.5,0.1]", cwd=tmp_path)
    line = assert_one_line_error(proc, "views.mask_scale")
    assert "[0.5, 0.1]" in line
