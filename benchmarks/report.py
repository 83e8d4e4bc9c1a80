"""The benchmark's tables: one row per measurement, the pipeline's cost breakdowns, and each recipe's
FLOPs and host syncs per step."""

from __future__ import annotations

from typing import Any

from benchmarks.common import Row, fmt
from benchmarks.syncs import StepAnalysis


def render(env: dict[str, Any], rows: list[Row], breakdown: list[dict[str, Any]], breakdown_ops: list[dict[str, Any]],
           analyses: dict[str, StepAnalysis], peak: float | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    where = env["gpu"] or f"{env['cpu']}, {env['cores']} cores, {env['torch_threads']} torch threads"
    load = " ".join(f"{x:.2f}" for x in env["load_avg_start"])
    console.print(f"[bold]tort benchmark[/] on {env['device']} ({where}); torch {env['torch']}, timm {env['timm']}; "
                  f"load average at start {load}; peak {fmt(peak)} TFLOP/s")
    table = Table(show_lines=False)
    for col, justify in (("recipe", "left"), ("mode", "left"), ("variant", "left"), ("batch", "right"),
                         ("samples/s", "right"), ("img/CPU-s", "right"), ("TFLOP/s", "right"), ("MFU", "right"),
                         ("peak MB", "right"), ("s", "right"), ("notes", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in rows:
        table.add_row(r.recipe, r.mode, r.variant, str(r.batch or ""), fmt(r.samples_per_s), fmt(r.per_core),
                      "n/a" if r.tflops is None else f"{r.tflops:.3g}", "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%", fmt(r.peak_mem_mb, 0),
                      fmt(r.seconds, 2), r.note)
    console.print(table)
    for rows_, key, column, title in (
            (breakdown, "part", "part", "pipeline cost per image, one thread"),
            (breakdown_ops, "op", "operation", "pipeline cost per image by operation (all views), one thread")):
        if not rows_:
            continue
        costs = Table(title=title)
        for col in ("recipe", column, "CPU ms/image", "share"):
            costs.add_column(col, justify="left" if col in ("recipe", column) else "right")
        for b in rows_:
            costs.add_row(b["recipe"], b[key], f"{b['ms_per_image']:.2f}", f"{100 * b['share']:.0f}%")
        console.print(costs)
    for recipe, a in analyses.items():
        flops = "n/a" if a.flops_per_step is None else f"{a.flops_per_step / 1e9:,.1f} GFLOP per step"
        console.print(f"{recipe}: {flops}; host syncs per step: {len(a.syncs)}"
                      + "".join(f"\n  {s.kind}: {s.op} at {s.where}" for s in a.syncs)
                      + (f"\n  host→device copies per step: {len(a.h2d)}"
                         + "".join(f"\n    {s.where}" for s in a.h2d) if a.h2d else "")
                      + (f"\n  [red]replay stopped: {a.error}[/]" if a.error else ""))
