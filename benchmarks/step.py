"""Mode `step`: the training step alone. Synthetic views already on the device, the real
TrainingSystem (all losses), backward, clipping, the real optimiser (AdamW in Lookahead for tort),
the LR schedule and the EMA teacher update: `trainer.train_step`, the trainer's own step."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from benchmarks.common import Row, reset_peak, sync, throughput
from tort_core.config import RunConfig
from tort_core.losses import LossContext
from tort_core.models import compiled_graphs
from tort_core.recipes import RECIPES, TortRecipe
from tort_core.trainer import autocast_for, build_optimizer, build_scheduler, peak_memory_mb, seed_all, train_step
from tort_core.views import GLOBAL_LIKE


def synthetic_batch(cfg: RunConfig, num_classes: int, device: torch.device):
    """A collated batch shaped like the recipe's DataLoader output: multi-crop views for Tort's
    recipes (and those built on it), one view otherwise."""
    b, g, l = cfg.batch_size, cfg.views.global_size, cfg.views.local_size
    make = lambda size: torch.randn(b, 3, size, size, device=device)  # noqa: E731
    if issubclass(RECIPES.get(cfg.recipe), TortRecipe):
        views: Any = [make(g) for _ in range(GLOBAL_LIKE)] + [make(l) for _ in range(cfg.views.n_local)]
    else:
        views = make(g)
    return views, torch.randint(0, num_classes, (b,), device=device)


class StepRunner:
    """The trainer's per-step work on a given batch.

    Each step is `trainer.train_step`, the trainer's own step; only the batches are synthetic.
    """

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, steps_per_epoch: int = 100):
        self.cfg, self.num_classes, self.device = cfg, num_classes, device
        recipe = RECIPES.get(cfg.recipe)()
        # On meta, build there directly: a ViT-B pair initialised on the CPU would cost seconds.
        with torch.device("meta") if device.type == "meta" else contextlib.nullcontext():
            self.system = recipe.build(cfg, num_classes, steps_per_epoch).to(device)
        self.system.train()
        self.optimizer = build_optimizer(self.system, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, steps_per_epoch)
        self.clip_params = [p for p in self.system.trainable().parameters() if p.requires_grad]
        self.total_steps = cfg.total_epochs * steps_per_epoch
        self.autocast = autocast_for(cfg, device)
        self.sums: dict[str, torch.Tensor] = {}
        self.first_loss: torch.Tensor | None = None  # on the device: read after the timing
        self.last_loss: torch.Tensor | None = None
        self.i = 0

    def step(self, batch) -> None:
        ctx = LossContext(epoch=0, step=self.i, total_steps=self.total_steps, num_classes=self.num_classes)
        # The foreach kernels have no meta implementation; the per-tensor path does the same.
        foreach = None if self.device.type == "meta" else True
        metrics, _ = train_step(self.cfg, self.system, self.optimizer, self.scheduler, self.clip_params, batch, ctx,
                                self.autocast, foreach=foreach)
        for k, v in metrics.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.last_loss = metrics["loss"].detach()
        if self.first_loss is None:
            self.first_loss = self.last_loss
        self.i += 1



def describe_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> str:
    """'fused AdamW in Lookahead', 'per-tensor Adam', ...: which of torch's implementations steps."""
    base = getattr(optimizer, "_base_optimizer", optimizer)
    d = base.defaults
    # torch picks foreach by itself (foreach=None) only where every parameter is on CUDA.
    impl = "fused" if d.get("fused") else "foreach" if d.get("foreach") or (
        d.get("foreach") is None and device.type == "cuda") else "per-tensor"
    return f"{impl} {type(base).__name__}" + (" in Lookahead" if base is not optimizer else "")


def bench_step(cfg: RunConfig, num_classes: int, device: torch.device, steps: int, warmup: int,
               flops_per_sample: float | None, peak: float | None, variant: str) -> Row:
    graphs_before = compiled_graphs()  # a process-wide count: an earlier recipe's graphs are in it
    seed_all(cfg.seed)  # eager and compiled rows start from the same weights, batch and rotations
    runner = StepRunner(cfg, num_classes, device)
    batch = synthetic_batch(cfg, num_classes, device)
    t_first = time.perf_counter()
    for _ in range(warmup):  # the first steps allocate optimiser state and, compiled, compile
        runner.step(batch)
    sync(device)
    t_first = time.perf_counter() - t_first
    reset_peak(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step(batch)
    sync(device)
    dt = time.perf_counter() - t0
    rate = steps * cfg.batch_size / dt
    tflops, mfu = throughput(flops_per_sample, rate, peak)
    extra = {"steps": steps, "warmup": warmup, "warmup_seconds": t_first, "ms_per_step": 1e3 * dt / steps,
             "optimizer": describe_optimizer(runner.optimizer, device), "steps_run": runner.i,
             "losses": [float(runner.first_loss), float(runner.last_loss)]}
    note = f"{1e3 * dt / steps:.1f} ms/step; warm-up {warmup} steps {t_first:.1f} s; {extra['optimizer']}"
    if variant == "compiled":
        after = compiled_graphs()
        graphs = after - graphs_before if after is not None and graphs_before is not None else None
        if graphs is not None:
            extra["compiled_graphs"] = graphs
            note += f"; {graphs} graphs"
    return Row(cfg.recipe, "step", variant, cfg.batch_size, rate, None, tflops, mfu, peak_memory_mb(device),
               dt, note, extra)


def compare_losses(compiled: Row, eager: Row) -> None:
    """Note on a compiled row how far its first and last losses (step: steps; e2e: epoch means) are
    from eager's, both from the same seed: compile=true must change the speed only (tests check that
    on tiny models; this, at full size, is reported, not asserted)."""
    if "losses" not in eager.extra or "losses" not in compiled.extra:  # a fit failed: nothing to compare
        return
    assert compiled.extra["steps_run"] == eager.extra["steps_run"]
    gaps = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(compiled.extra["losses"], eager.extra["losses"])]
    compiled.extra["loss_rel_gap_vs_eager"] = gaps
    compiled.note += "; loss vs eager: " + ", ".join(f"{g:.1e}" for g in gaps) + " apart (relative)"

