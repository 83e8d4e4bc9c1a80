"""Mode `checkpoint`: an epoch's checkpoint of the real system and optimiser state, written three
ways, for what each costs the training loop:

  sync        `torch.save` in the loop (checkpoint_write=sync): the loop waits for the whole write.
  background  tort's writer (checkpoint_write=background): the loop copies the tensors into a
              snapshot it keeps, a thread `torch.save`s it.
  dcp         `torch.distributed.checkpoint.async_save` (single process, its thread executor): it
              stages a copy and writes a directory of shards in a thread.

Per writer and save: the loop's stall (until `save` returns), the total (until the file is in
place), and a pure-Python loop on the main thread while the write goes on, against the same loop
just before: a GPU's training loop is such a loop, dispatching kernels from Python. The kernel's
accounting of that thread separates the two ways a writer can slow it: by taking a core (the
thread waits, runnable) and by holding the GIL (the thread is blocked), which would slow it even
where the cores are free.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Row
from benchmarks.step import StepRunner
from tort_core.checkpoint import BackgroundWriter, save_checkpoint
from tort_core.config import RunConfig
from tort_core.trainer import checkpoint_payload

WRITERS = ("sync", "background", "dcp")

# dcp warns at every save, from its own thread, that it saves in a single process: as meant here.
warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)


@dataclass
class Loop:
    """A pure-Python loop on the main thread for a while: what a training loop's kernel dispatch
    gets. `rate`: iterations per second. From the kernel's accounting of the thread (Linux
    schedstat): the share of the time it ran, waited for a core (runnable: other work had the
    cores), and was blocked (not runnable: waiting for the GIL, here). None where not available."""

    rate: float
    ran: float | None = None
    waiting: float | None = None
    blocked: float | None = None


def _schedstat() -> tuple[int, int] | None:
    """(ns on a core, ns runnable but waiting for one) of the calling thread so far."""
    try:
        on_cpu, waited, _ = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").read_text().split()
        return int(on_cpu), int(waited)
    except (OSError, ValueError):
        return None


def python_loop(seconds: float) -> Loop:
    before, t0 = _schedstat(), time.perf_counter()
    n, end = 0, t0 + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            pass
        n += 1000
    wall, after = time.perf_counter() - t0, _schedstat()
    if before is None or after is None:
        return Loop(n / wall)
    ran, waiting = ((a - b) / 1e9 / wall for a, b in zip(after, before))
    return Loop(n / wall, ran, waiting, max(0.0, 1.0 - ran - waiting))


class DcpWriter:
    """`torch.distributed.checkpoint.async_save` into a directory, without a process group."""

    def __init__(self) -> None:
        self._future: Future | None = None
        self._started = self.done_at = 0.0

    def save(self, path: Path, payload: dict[str, Any]) -> None:
        import torch.distributed.checkpoint as dcp

        self.wait()
        self._started = time.perf_counter()
        target = path.with_suffix(".dcp")
        shutil.rmtree(target, ignore_errors=True)
        future = dcp.async_save(payload, checkpoint_id=str(target), no_dist=True)
        future = getattr(future, "upload_completion", future)  # newer torch: a response with two futures
        future.add_done_callback(lambda _: setattr(self, "done_at", time.perf_counter()))
        self._future = future

    def wait(self) -> None:
        if self._future is not None:
            self._future.result()
            if self.done_at < self._started:  # the future's callback has not run yet
                self.done_at = time.perf_counter()
            self._future = None


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def bench_checkpoint(cfg: RunConfig, num_classes: int, device: torch.device, repeats: int, directory: Path,
                     writers: tuple[str, ...] = WRITERS) -> list[Row]:
    """An epoch's checkpoint of the real system (student, teacher, optimiser state), `repeats` times
    with each of `writers`: the loop's stall, the total, and the main thread's Python rate meanwhile."""
    runner = StepRunner(cfg, num_classes, device)
    # The optimiser's state as after any step (moments, Lookahead's slow weights): one step on zero
    # gradients, without the forward pass that would take minutes at ViT-B on a CPU.
    for p in runner.clip_params:
        p.grad = torch.zeros_like(p)
    runner.optimizer.step()
    if hasattr(runner.optimizer, "sync_lookahead"):
        runner.optimizer.sync_lookahead()  # allocates Lookahead's slow weights, as the epoch's end does
    config_id = cfg.content_hash()

    def payload() -> dict[str, Any]:
        return checkpoint_payload(cfg, config_id, 0, 1, runner.system, runner.optimizer, runner.scheduler,
                                  [{"loss": 1.0}])

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "checkpoint.pt"
    rows: list[Row] = []
    try:
        sync = []
        for _ in range(repeats):
            t = time.perf_counter()
            save_checkpoint(path, payload())
            sync.append(time.perf_counter() - t)
        size = path.stat().st_size
        t_sync = statistics.median(sync)
        rows.append(Row(cfg.recipe, "checkpoint", "sync", seconds=t_sync,
                        note=f"{size / 1e9:.2f} GB; the loop waits {t_sync:.2f} s ({min(sync):.2f}–{max(sync):.2f}, "
                             f"{repeats} writes)",
                        extra={"bytes": size, "stall_seconds": sync, "total_seconds": sync}))
        window = max(0.05, min(sync) / 2)  # the Python rate is measured while the write surely goes on
        for name in writers:
            if name == "sync":
                continue
            rows.append(_overlapped(name, cfg.recipe, path, payload, repeats, window, t_sync))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return rows


def _overlapped(name: str, recipe: str, path: Path, payload, repeats: int, window: float, t_sync: float) -> Row:
    """The row of a writer whose write overlaps the loop: for each save, the Python rate alone just
    before it (a shared machine's load drifts), the save, the Python rate while it writes, and the
    wait for the file."""
    writer: Any = {"background": BackgroundWriter, "dcp": DcpWriter}[name]()
    stalls, totals, rates, loops = [], [], [], []
    try:
        t = time.perf_counter()
        writer.save(path, payload())  # the first allocates the snapshot
        first = time.perf_counter() - t
        writer.wait()
        for _ in range(repeats):
            solo = python_loop(window)
            t = time.perf_counter()
            writer.save(path, payload())
            stalls.append(time.perf_counter() - t)
            during = python_loop(window)
            rates.append(during.rate / solo.rate)
            loops.append({"solo": asdict(solo), "during": asdict(during)})
            writer.wait()
            done = t + stalls[-1] + writer.last_write_seconds if name == "background" else writer.done_at
            totals.append(done - t)
    except Exception as err:  # noqa: BLE001 - a writer that cannot write this payload is a finding, reported
        return Row(recipe, "checkpoint", name, note=f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
    finally:
        if name == "background":
            writer.release()
    written = path.with_suffix(".dcp") if name == "dcp" else path
    stall, total, rate = (statistics.median(x) for x in (stalls, totals, rates))
    blocked = [x["during"]["blocked"] for x in loops if x["during"]["blocked"] is not None]
    threads = (f" (its thread blocked {100 * statistics.median(blocked):.0f}% of the time, waiting for the GIL)"
               if blocked else "")
    return Row(recipe, "checkpoint", name, seconds=stall,
               note=f"the loop waits {stall:.2f} s ({min(stalls):.2f}–{max(stalls):.2f}; sync: {t_sync:.2f} s); the file "
                    f"is in place after {total:.2f} s; meanwhile a Python loop runs at "
                    f"{100 * rate:.0f}% of its solo rate{threads}; first save {first:.2f} s",
               extra={"bytes": _size(written), "stall_seconds": stalls, "total_seconds": totals,
                      "python_rate_ratio": rates, "python_loops": loops, "first_save_seconds": first})
