"""Running the installed `tort` command as a user does, and checking it failed the way the README
promises: one line, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TORT = Path(sys.executable).with_name("tort")

# One tiny epoch of the demo recipe: seconds on one CPU.
TINY_ARGS = ["--profile", "demo", "--no-progress", "--set", "epochs=1", "--set", "optim.warmup_epochs=0",
             "--set", "optim.cooldown_epochs=0", "--set", "data.train_limit=64", "--set", "data.test_limit=32",
             "--set", "views.n_local=2", "--set", "batch_size=16", "--threads", "1"]


def run_tort(*args: str, cwd: Path | None = None, timeout: float = 300,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed `tort` entry point, as a user runs it (this checkout first on the path)."""
    env = dict(os.environ, **(env or {}), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [str(TORT)] if TORT.exists() else [sys.executable, "-m", "cli"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """Exit `code`, no traceback, and stderr's last line a single `error: ...` line holding `fragments`."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`tort ARGS` through `cli.main` in this process (what the entry point calls), for cases where
    a subprocess would spend its seconds importing torch: (exit code, stdout, stderr)."""
    import pytest

    import cli

    monkeypatch.setattr(sys, "argv", ["tort", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err
