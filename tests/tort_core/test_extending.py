"""docs/extending.md runs as written: its files are written into a temporary folder, its package's
entry points are written as `pip install -e` would (an installed distribution's metadata, in that
folder: nothing is installed), and the commands of its "try it" block run in a shell."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in BLOCK.findall(PAGE.read_text())]


def files() -> dict[str, str]:
    """path → text of every block whose first line is a comment naming its file."""
    out = {}
    for _, body in blocks():
        first, _, rest = body.partition("\n")
        if first.startswith("# tort-koleo/"):
            out[first[2:].strip()] = rest
    return out


def commands() -> list[str]:
    (body,) = [b for lang, b in blocks() if lang == "bash" and b.startswith("# try it\n")]
    return [line for line in body.splitlines()[1:] if line.strip()]


def write_package(where: Path) -> Path:
    """The page's files under `where`, and the metadata `pip install -e tort-koleo` would write."""
    for path, text in files().items():
        target = where / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    project = tomllib.loads((where / "tort-koleo" / "pyproject.toml").read_text())["project"]
    dist = where / "tort-koleo" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items()) + "\n"
        for group, points in project["entry-points"].items()))
    return where / "tort-koleo"


def test_the_pages_files_compile_and_its_entry_points_name_what_they_define(tmp_path):
    package = write_package(tmp_path)
    for path in package.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    for group, points in project["entry-points"].items():
        for target in points.values():
            module, attr = target.split(":")
            source = (package / (module.replace(".", "/") + ".py")).read_text()
            assert re.search(rf"^(class|def) {attr}\b", source, re.M), (group, target)
    assert commands()[0] == "pip install -e tort-koleo"


@pytest.mark.slow
def test_the_worked_example_runs_as_written(tmp_path):
    package = write_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), str(ROOT)]), "WANDB_MODE": "offline"}
    outputs = []
    for line in commands():
        if line.startswith("pip install -e "):
            assert tmp_path / line.removeprefix("pip install -e ") == package  # written above instead
            continue
        words = shlex.split(line.split("|")[0])
        program = {"tort": [sys.executable, "-m", "cli"], "python": [sys.executable]}[words[0]]
        shell = shlex.join(program + words[1:]) + (" |" + line.split("|", 1)[1] if "|" in line else "")
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (line, proc.stdout[-2000:], proc.stderr[-2000:])
        outputs.append(proc.stdout)
    listing = outputs[0]
    assert "tort_koleo: tort's three losses and KoLeo" in listing and "koleo: minus the mean log distance" in listing
    epochs = pd.read_parquet(tmp_path / "runs" / "koleo" / "metrics.parquet")
    assert len(epochs) == 1 and epochs["loss_koleo"].notna().all() and (epochs["recipe"] == "tort_koleo").all()
    assert (tmp_path / "koleo.png").stat().st_size > 10_000
