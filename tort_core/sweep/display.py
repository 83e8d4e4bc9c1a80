"""Sweep progress: trials pending / running / done / failed, elapsed time and ETA.

The driver's Tune callback feeds it. On a terminal it is a live rich display, redrawn on rich's
refresh thread; elsewhere (a cluster job's log, `nohup`, a pipe) a live display would print
nothing until the end, so each trial's start, epochs and end are one timestamped line each.
The ETA is the epochs still to train, times the mean measured epoch time, less the time the
running epochs have already spent, spread over the trials that run at once; before any epoch has
finished there is no ETA.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


def fmt_seconds(s: float | None) -> str:
    if s is None or s != s:
        return "-"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


@dataclass
class _Row:
    label: str
    total_epochs: int
    state: str = "pending"  # pending | running | done | failed | stopped
    epoch: int = 0
    started: float | None = None
    ended: float | None = None
    top1: float | None = None
    attempts: int = 1
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_started: float | None = None  # when the epoch now running began (its trial's start or last epoch's end)


class SweepDisplay:
    """`live`: show progress at all. On a terminal it is redrawn in place; elsewhere it is printed
    as lines (`lines=True` forces lines, for tests)."""

    def __init__(self, sweep: str, trials: list[tuple[str, str, int]], skipped: int = 0,
                 max_concurrent: int | None = None, console: Console | None = None, live: bool = True,
                 lines: bool | None = None, clock=time.monotonic):
        self.sweep = sweep
        self.rows = {tid: _Row(label, total) for tid, label, total in trials}
        self.skipped = skipped
        self.max_concurrent = max_concurrent
        self.console = console or Console(stderr=True)
        self.clock = clock
        self.t0 = clock()
        self._lock = threading.Lock()
        self.lines = live and (not self.console.is_terminal if lines is None else lines)
        self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=2,
                          transient=False) if live and not self.lines else None

    def _say(self, text: str) -> None:
        """One progress line (lines mode): elapsed time, the sweep's counts, the event."""
        if not self.lines:
            return
        c = self.counts()
        eta = self.eta()
        self.console.print(f"[{fmt_seconds(self.clock() - self.t0)}] {self.sweep}: {text}  "
                           f"({c['done']} done, {c['failed']} failed, {c['running']} running, {c['pending']} pending"
                           + (f", ETA {fmt_seconds(eta)})" if eta is not None else ")"),
                           markup=False, highlight=False, soft_wrap=True)

    # -- events ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._live is not None:
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()

    def trial_started(self, tid: str) -> None:
        with self._lock:
            row = self.rows[tid]
            now = self.clock()
            row.state, row.started = "running", row.started or now
            row.epoch_started = now
            self._say(f"started {tid} {row.label}" + (f" (attempt {row.attempts})" if row.attempts > 1 else ""))

    def trial_retry(self, tid: str) -> None:
        with self._lock:
            self.rows[tid].attempts += 1

    def epoch(self, tid: str, record: dict) -> None:
        with self._lock:
            row = self.rows[tid]
            now = self.clock()
            row.state = "running"
            row.started = row.started or now
            row.epoch = max(row.epoch, int(record.get("epoch", 0)))
            row.epoch_started = now
            if record.get("test_top1") is not None:
                row.top1 = float(record["test_top1"])
            if record.get("epoch_seconds"):
                row.epoch_seconds.append(float(record["epoch_seconds"]))
            top1 = f", test top-1 {row.top1:.2f}%" if row.top1 is not None else ""
            took = f", {fmt_seconds(record['epoch_seconds'])}" if record.get("epoch_seconds") else ""
            self._say(f"{tid} epoch {row.epoch}/{row.total_epochs}{top1}{took}")

    def trial_finished(self, tid: str, status: str) -> None:
        with self._lock:
            row = self.rows[tid]
            row.state = {"completed": "done"}.get(status, status)
            row.ended = self.clock()
            took = fmt_seconds(row.ended - row.started) if row.started else "-"
            self._say(f"{status} {tid} {row.label} after {row.epoch}/{row.total_epochs} epochs in {took}")

    def trial_deferred(self, tid: str) -> None:
        """The trial did not run (its run directory was held): pending again."""
        with self._lock:
            self.rows[tid].state = "pending"

    def note(self, text: str) -> None:
        """One line above the live table (or in the log when output is not a terminal)."""
        self.console.print(text, markup=False, highlight=False)

    # -- rendering -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {"pending": 0, "running": 0, "done": 0, "failed": 0, "stopped": 0}
        for row in self.rows.values():
            out[row.state] = out.get(row.state, 0) + 1
        return out

    def eta(self) -> float | None:
        times = [s for r in self.rows.values() for s in r.epoch_seconds]
        if not times:
            return None
        per_epoch = sum(times) / len(times)
        now = self.clock()
        left = 0.0
        for r in self.rows.values():
            if r.state not in ("pending", "running"):
                continue
            work = max(r.total_epochs - r.epoch, 0) * per_epoch
            if r.state == "running" and r.epoch_started is not None and r.epoch < r.total_epochs:
                work -= min(now - r.epoch_started, per_epoch)  # the running epoch is partly done
            left += work
        running = sum(r.state == "running" for r in self.rows.values())
        lanes = max(1, min(self.max_concurrent or running or 1, running or 1))
        return max(0.0, left / lanes)

    def render(self) -> Group:
        with self._lock:
            c = self.counts()
            elapsed = self.clock() - self.t0
            head = Text.assemble(
                (f"sweep {self.sweep}", "bold"), f"  {len(self.rows)} to run",
                f" ({self.skipped} already done)" if self.skipped else "",
                "  pending ", (str(c["pending"]), "bold"), "  running ", (str(c["running"]), "bold cyan"),
                "  done ", (str(c["done"]), "bold green"), "  failed ", (str(c["failed"]), "bold red"),
                *((("  stopped ", ""), (str(c["stopped"]), "bold yellow")) if c["stopped"] else ()),
            )
            clock = Text(f"elapsed {fmt_seconds(elapsed)}  ETA {fmt_seconds(self.eta())}")
            table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
            for col in ("trial", "", "epoch", "top1", "time"):
                table.add_column(col)
            now = self.clock()
            running = [(t, r) for t, r in self.rows.items() if r.state == "running"]
            for tid, row in running[:12]:
                retry = f" (attempt {row.attempts})" if row.attempts > 1 else ""
                table.add_row(tid, row.label + retry, f"{row.epoch}/{row.total_epochs}",
                              "-" if row.top1 is None else f"{row.top1:.1f}",
                              fmt_seconds(now - row.started if row.started else None))
            if len(running) > 12:
                table.add_row("…", f"{len(running) - 12} more running", "", "", "")
            return Group(head, clock, table) if running else Group(head, clock)
