"""Fixtures for the adversarial suite: the installed `tort` command, and hostile file systems (a
tiny tmpfs that fills up, a read-only mount) where this machine lets a test mount one."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest


def _mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, f"tort-test-{uuid.uuid4().hex[:8]}", str(target)],
                          capture_output=True, text=True)
    return proc.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB file system: the first checkpoint of even the demo model does not fit."""
    target = tmp_path / "disk"
    if not _mount(target, "size=1m"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    yield target
    _umount(target)


@pytest.fixture
def readonly_dir(tmp_path):
    """A directory this process cannot write: a read-only mount (as root), else a 0555 folder."""
    target = tmp_path / "ro"
    if os.geteuid() != 0:
        target.mkdir()
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
        return
    if not _mount(target, "ro,size=1m"):
        pytest.skip("cannot make a read-only directory here (root without mount rights)")
    yield target
    _umount(target)
