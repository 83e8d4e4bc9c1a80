"""A rich progress display for one training run (steps within the epoch, a line per epoch)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .trainer import Callback


def epoch_line(record: dict[str, float], total_epochs: int) -> str:
    parts = [f"epoch {int(record['epoch'])}/{total_epochs}", f"loss {record.get('loss', float('nan')):.4f}"]
    for key, label in (("test_top1", "top1"), ("knn_top1", "knn")):
        if key in record:
            parts.append(f"{label} {record[key]:.2f}%")
    parts.append(f"{record.get('samples_per_s', 0.0):.1f} img/s")
    parts.append(f"{record.get('epoch_seconds', 0.0):.1f}s")
    return "  ".join(parts)


class RichProgress(Callback):
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task = None
        self.total_epochs = 0

    def on_fit_start(self, cfg, info) -> None:
        self.total_epochs = info["total_epochs"]
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("training", total=info["steps_per_epoch"])

    def on_step_end(self, epoch, step_in_epoch, steps_per_epoch) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step_in_epoch + 1,
                                 description=f"epoch {epoch + 1}/{self.total_epochs}")

    def on_epoch_end(self, record, checkpoint) -> None:
        if self.progress is not None:
            self.progress.console.print(epoch_line(record, self.total_epochs))

    def on_fit_end(self, result) -> None:
        if self.progress is not None:
            self.progress.stop()
