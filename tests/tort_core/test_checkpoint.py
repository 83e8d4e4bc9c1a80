"""Checkpoint writers: the background writer's file is the one torch.save would write, it holds
the state as it was at `save`, errors reach the trainer, a killed trainer never leaves a partial or
late checkpoint behind, and a Ctrl-C lets the write in flight land."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tort_core import checkpoint as ckpt
from tort_core.checkpoint import (BackgroundWriter, CheckpointError, SyncWriter, checkpoint_writer,
                                  discard_partial_writes, load_checkpoint)


@pytest.fixture
def writer():
    w = BackgroundWriter()
    yield w
    w.release()


def _payload():
    g = torch.Generator().manual_seed(0)
    return {
        "epoch": 3, "config": {"name": "x", "betas": [0.9, 0.999]}, "records": [{"loss": 1.5}],
        "system": {"w": torch.randn(7, 5, generator=g), "w_t": torch.randn(5, 7, generator=g).t(),  # non-contiguous
                   "half": torch.randn(9, generator=g).to(torch.bfloat16), "count": torch.tensor(4),
                   "mask": torch.tensor([True, False, True]), "empty": torch.empty(0, 3)},
        "rng": {"torch": torch.get_rng_state(), "numpy": ["MT19937", torch.arange(6, dtype=torch.int64), 2, 0, 0.0],
                "python": (3, tuple(range(5)), None)},
    }


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_background_writer_writes_the_file_torch_save_writes(writer, tmp_path):
    payload = _payload()
    SyncWriter().save(tmp_path / "sync.pt", payload)
    writer.save(tmp_path / "bg.pt", payload)
    writer.wait()
    background, sync = load_checkpoint(tmp_path / "bg.pt"), load_checkpoint(tmp_path / "sync.pt")
    _assert_same(background, sync)
    _assert_same(background, payload)
    # Each tensor its own storage, as torch.save stores the originals (not views of one buffer).
    w = background["system"]["w"]
    assert w.untyped_storage().nbytes() == w.numel() * w.element_size()
    assert writer.last_write_seconds is not None and writer.last_write_seconds > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bg.pt", "sync.pt"]  # no temporary left


def test_the_file_holds_the_state_at_save_not_at_write(writer, tmp_path):
    params = torch.zeros(1_000_000)
    writer.save(tmp_path / "c.pt", {"p": params})
    params.add_(1.0)  # the next training step, while the write is in flight
    writer.wait()
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["p"], torch.zeros(1_000_000))
    writer.save(tmp_path / "c.pt", {"p": params, "extra": torch.ones(3)})  # another layout: a new buffer
    writer.wait()
    state = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(state["p"], torch.ones(1_000_000)) and torch.equal(state["extra"], torch.ones(3))


def test_a_failed_write_is_raised_by_wait_with_the_path_and_leaves_nothing(writer, tmp_path):
    target = tmp_path / "missing" / "checkpoint.pt"
    writer.save(target, {"p": torch.ones(3)})
    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*missing/checkpoint\.pt"):
        writer.wait()
    writer.save(tmp_path / "ok.pt", {"p": torch.ones(3)})  # the writer carries on
    writer.wait()
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["p"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.pt"]


def test_a_full_disk_is_raised_as_the_oserror_the_command_line_reports(writer, tmp_path, monkeypatch):
    import errno

    def full(payload, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckpt.torch, "save", full)
    writer.save(tmp_path / "checkpoint.pt", {"p": torch.ones(3)})
    with pytest.raises(OSError) as info:
        writer.wait()
    assert info.value.errno == errno.ENOSPC and not isinstance(info.value, CheckpointError)
    assert list(tmp_path.iterdir()) == []


_KILLED_TRAINER = textwrap.dedent("""
    import os, signal, sys, time, torch
    from pathlib import Path
    from tort_core.checkpoint import BackgroundWriter
    path = Path(sys.argv[1])
    writer = BackgroundWriter()
    writer.save(path, {"version": 1, "p": torch.zeros(3)})
    writer.wait()
    writer.save(path, {"version": 2, "p": torch.ones(50_000_000)})  # 200 MB: still being written...
    tmp = path.with_name(path.name + ".tmp")
    while not tmp.exists():
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGKILL)  # ...when the trainer dies
""")


@pytest.mark.slow
def test_a_killed_trainer_leaves_its_last_finished_checkpoint_whole(tmp_path):
    path = tmp_path / "checkpoint.pt"
    proc = subprocess.run([sys.executable, "-c", _KILLED_TRAINER, str(path)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(Path(ckpt.__file__).parents[1])})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    time.sleep(1.0)  # nothing of the dead trainer may publish anything later
    state = load_checkpoint(path)
    assert state["version"] == 1 and torch.equal(state["p"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "checkpoint.pt.tmp"]
    discard_partial_writes(path)  # what the next run in this directory does first
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_which_writer_each_setting_gives():
    assert isinstance(checkpoint_writer("auto", torch.device("cpu")), SyncWriter)
    assert isinstance(checkpoint_writer("sync", torch.device("cuda")), SyncWriter)
    for mode, device in [("auto", "cuda"), ("background", "cpu")]:
        assert isinstance(checkpoint_writer(mode, torch.device(device)), BackgroundWriter)


def test_a_released_writer_holds_no_snapshot_and_serves_again(writer, tmp_path):
    writer.save(tmp_path / "missing" / "a.pt", {"p": torch.ones(1000)})
    assert writer.snapshot_bytes == 4000  # the snapshot, kept for the next save
    with pytest.raises(CheckpointError, match="missing"):
        writer.release()  # a run whose last write failed...
    assert writer.snapshot_bytes == 0  # ...holds no snapshot after it either
    writer.save(tmp_path / "a.pt", {"p": torch.zeros(1000), "q": torch.ones(2, dtype=torch.bfloat16)})
    writer.release()  # the run's end: its last checkpoint is on disk, the memory freed
    state = load_checkpoint(tmp_path / "a.pt")
    assert torch.equal(state["p"], torch.zeros(1000)) and state["q"].dtype == torch.bfloat16
    assert writer.snapshot_bytes == 0


def test_leftovers_of_killed_writes_are_discarded_and_nothing_else(tmp_path):
    for name in ("checkpoint.pt", "checkpoint.pt.tmp", "checkpoint.pt.4242.tmp", "config.yaml", "other.pt.tmp"):
        (tmp_path / name).write_text("x")
    discard_partial_writes(tmp_path / "checkpoint.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "config.yaml", "other.pt.tmp"]


def test_a_state_dicts_module_versions_survive_the_writer(writer, tmp_path):
    state = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)).state_dict()
    writer.save(tmp_path / "c.pt", {"system": state})
    writer.wait()
    loaded = load_checkpoint(tmp_path / "c.pt")["system"]
    assert loaded._metadata == state._metadata  # what load_state_dict reads to upgrade old formats


def test_an_unpicklable_payload_is_refused_and_the_writer_carries_on(writer, tmp_path):
    with pytest.raises(CheckpointError, match="cannot be pickled"):
        writer.save(tmp_path / "bad.pt", {"p": torch.ones(2), "f": lambda: None})
    writer.wait()  # nothing in flight: returns at once
    writer.save(tmp_path / "ok.pt", {"p": torch.ones(2)})
    writer.wait()
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["p"], torch.ones(2))
    assert not (tmp_path / "bad.pt").exists()


_INTERRUPTED_TRAINER = textwrap.dedent("""
    import os, signal, sys, torch
    from pathlib import Path
    from tort_core.checkpoint import BackgroundWriter
    path = Path(sys.argv[1])
    writer = BackgroundWriter()
    writer.save(path, {"version": 1, "p": torch.zeros(3)})
    writer.wait()
    try:
        writer.save(path, {"version": 2, "p": torch.ones(50_000_000)})
        os.killpg(os.getpgrp(), signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        signal.pause()
    except KeyboardInterrupt:
        writer.release()  # what fit does on the way out
        print("released", flush=True)
""")


@pytest.mark.slow
def test_ctrl_c_stops_the_trainer_but_not_the_write_in_flight(tmp_path):
    path = tmp_path / "checkpoint.pt"
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_TRAINER, str(path)], capture_output=True, text=True,
                          timeout=120, start_new_session=True,
                          env={**os.environ, "PYTHONPATH": str(Path(ckpt.__file__).parents[1])})
    assert proc.returncode == 0 and "released" in proc.stdout, proc.stderr
    state = load_checkpoint(path)
    assert state["version"] == 2 and state["p"].shape == (50_000_000,)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
