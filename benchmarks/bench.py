"""How fast is one training run, and which part limits it?

    python benchmarks/bench.py --recipe tort --profile thesis --device cuda \
        --dataset imagefolder --data-root /data/flowers17
    python benchmarks/bench.py --tiny          # CPU-sized model and views, seconds: what CI runs

Modes (`--mode`, comma-separated; default all):

  step      the training step alone: synthetic views already on the device, the real
            TrainingSystem (all losses), backward, clipping, the real optimiser (AdamW in
            Lookahead for tort), the LR schedule and the EMA teacher update.
  pipeline  the data pipeline alone: the recipe's real training transform, `SeededViews`, a
            DataLoader with N workers; images/s, and images per CPU-second of the processes doing
            the work (what one core delivers, even on a shared machine), hence the cores needed
            for the issue's targets; plus the CPU cost of each view. Both places augmentation can
            run (views.augment_on): all on the CPU, and the worker half of `device` (decode and
            the random draws), plus the device half alone (on --device).
  e2e       the real `trainer.fit` for two short epochs (augmentation, all losses, EMA, Lookahead,
            metric collection); samples/s is the trainer's own `samples_per_s` of the second epoch
            (workers up, compilation done) and of the first.
  checkpoint  an epoch's checkpoint of the real system and optimiser state, written in the loop
            (checkpoint_write=sync) and by the writer process (background): how long the loop
            waits, the writer's time, the file's size (--checkpoint-dir: the disk to write to).
  startup   a fresh process: interpreter, imports, CUDA init, dataset load, model build.
  syncs     the step replayed on the meta device, listing every op that would make the host wait
            for the GPU (.item(), float()/bool() of a device tensor, data-dependent shapes,
            device→host copies), with the line of code that issued it.
  sweep     (only when asked for) a real `--trials`-seed sweep of the demo profile on a local Ray,
            short trials (--sweep-trial demo: the demo's own length): wall time, the training
            time the store records and its share of wall × concurrent trials, and where the rest
            goes (driver, Ray, worker start, per-trial overhead on fresh and reused workers,
            shutdown).

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on one step replayed on the meta
device (same shapes, no arithmetic, so the ViT-B count costs seconds on any machine): matmuls and
attention of the student's forward and backward, the teacher's forward, the heads. MFU = achieved
FLOP/s ÷ `--peak-tflops` (default: the GPU's dense bf16 peak when known, n/a on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms as T

from tort_core.config import RunConfig, build_config, parse_sets
from tort_core.data import DatasetPair, DecodedImages, load_dataset
from tort_core.device_views import DeviceNormalize
from tort_core.errors import ConfigError, DataError
from tort_core.losses import LossContext
from tort_core.models import compiled_graphs
from tort_core.recipes import RECIPES
from tort_core.checkpoint import BackgroundWriter, background_supported, save_checkpoint, write_mode
from tort_core.trainer import (SeededViews, epoch_order, peak_memory_mb, to_device, augmentation, autocast_for,
                               build_optimizer, build_scheduler, checkpoint_payload, eval_splits, fit, resolve_device,
                               seed_all, train_step)
from tort_core.views import GLOBAL_LIKE, MultiCropTransform

MODES = ("step", "pipeline", "e2e", "checkpoint", "startup", "syncs", "sweep")
DEFAULT_MODES = MODES[:-1]  # sweep starts Ray and runs a whole sweep: only when asked for
RECIPE_NAMES = ("tort", "sota")
# The H100 targets, end to end at the thesis profile (samples/s).
TARGETS = {"tort": 520.0, "sota": 2500.0}
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' datasheets, by device-name fragment;
# the first match wins, so the more specific names come first.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0),
               ("L4", 121.0), ("A10", 125.0), ("V100", 125.0))
# --tiny: the demo profile made smaller still, so every mode finishes in seconds on a CPU.
TINY = {
    "batch_size": 8,
    "views.n_local": 2,
    "model.kwargs": {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2},
    "heads.hidden_dim": 64,
    "heads.bottleneck_dim": 32,
    "heads.out_dim": 64,
    "data.eval_batch_size": 64,
}


# ---------------------------------------------------------------------------------------------
# Results

@dataclass
class Row:
    recipe: str
    mode: str
    variant: str = "-"  # eager | compiled for step and e2e
    batch: int = 0
    samples_per_s: float | None = None
    per_core: float | None = None  # pipeline: images per CPU-second of the processes doing the work
    tflops: float | None = None  # achieved model FLOP/s
    mfu: float | None = None
    peak_mem_mb: float | None = None
    seconds: float | None = None  # wall time of what was measured
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _throughput(flops_per_sample: float | None, samples_per_s: float, peak: float | None):
    if not flops_per_sample:
        return None, None
    achieved = flops_per_sample * samples_per_s / 1e12
    return achieved, (achieved / peak if peak else None)


# ---------------------------------------------------------------------------------------------
# The step: the body of trainer._train_epoch's loop, on a fixed batch

def synthetic_batch(cfg: RunConfig, num_classes: int, device: torch.device):
    """A collated batch shaped like the recipe's DataLoader output."""
    b, g, l = cfg.batch_size, cfg.views.global_size, cfg.views.local_size
    make = lambda size: torch.randn(b, 3, size, size, device=device)  # noqa: E731
    if cfg.recipe == "tort":
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


# ---------------------------------------------------------------------------------------------
# Host-sync detection and FLOP counting on the meta device

@dataclass
class Sync:
    kind: str
    op: str
    where: str


_SCALAR_READ = {"aten::_local_scalar_dense", "aten::equal", "aten::is_nonzero"}
_DATA_DEPENDENT = {"aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::unique_dim",
                   "aten::unique_consecutive", "aten::bincount", "aten::histc"}
_BOOL_INDEXED = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}
_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS = os.path.abspath(__file__)


def _caller() -> str:
    """The innermost frame outside torch and this spy: the line of model/recipe code that asked."""
    root = Path(__file__).resolve().parent.parent
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if path.startswith(_TORCH_DIR) or (path == _THIS and frame.name in ("__torch_dispatch__", "_caller")):
            continue
        try:
            shown = str(Path(path).relative_to(root))
        except ValueError:
            shown = path.split("site-packages/")[-1]
        return f"{shown}:{frame.lineno} ({frame.name})"
    return "?"


class SyncSpy(TorchDispatchMode):
    """Records every op that would block the host on a real accelerator, with the meta device
    standing in for it, and lets the replay go on with a stand-in result.

    A CPU tensor's .item() (an optimiser's step counter) is host-only and not recorded; a copy to
    the device is recorded separately, as it blocks only from pageable memory on some drivers.
    """

    def __init__(self):
        super().__init__()
        self.syncs: list[Sync] = []
        self.h2d: list[Sync] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        tensors = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor)]
        on_device = any(t.device.type == "meta" for t in tensors)
        if name in _SCALAR_READ and on_device:
            self.syncs.append(Sync("scalar read (.item/float/bool)", name, _caller()))
            dtype = tensors[0].dtype
            return True if dtype == torch.bool or name != "aten::_local_scalar_dense" else (
                1.0 if dtype.is_floating_point else 1)
        if name in ("aten::_to_copy", "aten::copy_") and tensors:
            src = tensors[1] if name == "aten::copy_" else tensors[0]
            dst_device = tensors[0].device if name == "aten::copy_" else torch.device(kwargs.get("device") or src.device)
            if src.device.type == "meta" and dst_device.type == "cpu":
                self.syncs.append(Sync("device→host copy", name, _caller()))
                return tensors[0] if name == "aten::copy_" else torch.zeros(
                    src.shape, dtype=kwargs.get("dtype") or src.dtype)
            if src.device.type == "cpu" and dst_device.type == "meta":
                self.h2d.append(Sync("host→device copy", name, _caller()))
        bool_index = name in _BOOL_INDEXED and any(
            isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)
            for t in (args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []))
        if on_device and (name in _DATA_DEPENDENT or bool_index):
            self.syncs.append(Sync("data-dependent shape", name + (" (bool mask)" if bool_index else ""), _caller()))
            import torch.fx.experimental._config as fx_config

            with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
                return func(*args, **kwargs)
        return func(*args, **kwargs)


def _flat(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


@dataclass
class StepAnalysis:
    flops_per_step: float | None
    syncs: list[Sync]
    h2d: list[Sync]
    error: str | None = None


def analyse_step(cfg: RunConfig, num_classes: int) -> StepAnalysis:
    """One step on the meta device: its FLOPs and its host syncs. Compilation is left out (same
    FLOPs; the compiled graph is the eager one's ops)."""
    meta = torch.device("meta")
    spy = SyncSpy()
    flops: float | None = None
    try:
        runner = StepRunner(cfg.model_copy(update={"compile": False}), num_classes, meta)
        batch = synthetic_batch(cfg, num_classes, meta)
        with spy, FlopCounterMode(display=False) as counter:
            runner.step(batch)
        flops = float(counter.get_total_flops())
    except Exception as err:  # noqa: BLE001 - report what was found before the replay stopped
        return StepAnalysis(flops, spy.syncs, spy.h2d, f"{type(err).__name__}: {str(err).splitlines()[0]}")
    return StepAnalysis(flops, spy.syncs, spy.h2d)


# ---------------------------------------------------------------------------------------------
# Modes

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
    _sync(device)
    t_first = time.perf_counter() - t_first
    _reset_peak(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step(batch)
    _sync(device)
    dt = time.perf_counter() - t0
    rate = steps * cfg.batch_size / dt
    tflops, mfu = _throughput(flops_per_sample, rate, peak)
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


class _Keys(Sampler):
    """`n` (epoch, index) keys over as many epochs as needed, each shuffled like the trainer's."""

    def __init__(self, size: int, n: int, seed: int):
        self.size, self.n, self.seed = size, n, seed

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        produced = 0
        for epoch in count():
            for index in epoch_order(self.size, self.seed, epoch):
                if produced == self.n:
                    return
                yield epoch, index
                produced += 1


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """torch's intra-op threads set to `n` for the block (None: unchanged); one core is what a
    loader worker process gets (DataLoader sets 1 there)."""
    threads = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def bench_pipeline(cfg: RunConfig, data: DatasetPair, device: torch.device, workers: list[int], images: int,
                   note: str, transform: Any = None, label: str = "", collate: Any = None) -> list[Row]:
    """Images/s on the wall clock, and images per CPU-second: on a shared machine the wall rate
    depends on what else runs, the CPU-time rate much less, so "cores needed" is computed from it.

    `transform`, `collate`: what the loader runs (default: the recipe's CPU training transform)."""
    transform = transform or RECIPES.get(cfg.recipe)().train_transform(cfg)
    ds = SeededViews(data.train, transform, cfg.seed)
    b = cfg.batch_size
    rows = []
    for w in workers:
        # The first batches are warm-up: worker start-up, and with w workers the first w batches
        # are produced concurrently, so timing from the first would count them twice.
        skip = max(1, w)
        n_batches = max(2, math.ceil(images / b)) + skip
        loader = DataLoader(ds, batch_size=b, sampler=_Keys(len(ds), n_batches * b, cfg.seed), num_workers=w,
                            drop_last=True, pin_memory=cfg.data.pin_memory and device.type == "cuda",
                            collate_fn=collate)
        with _torch_threads(1 if w == 0 else None):
            t_start = time.perf_counter()
            it = iter(loader)
            for _ in range(skip):
                next(it)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n_batches - skip):
                next(it)
            dt, main_cpu = time.perf_counter() - t0, time.process_time() - c0
            # Workers' CPU time from their start: every batch they made, warm-up ones included.
            worker_cpu = [_cpu_seconds(p.pid) for p in getattr(it, "_workers", [])]
            del it
        n = (n_batches - skip) * b
        rate = n / dt
        if w == 0:
            per_core = n / main_cpu if main_cpu > 0 else None
        elif worker_cpu and None not in worker_cpu and sum(worker_cpu) > 0:  # type: ignore[arg-type]
            per_core = n_batches * b / sum(worker_cpu)  # type: ignore[arg-type]
        else:
            per_core = rate / w
        target = TARGETS.get(cfg.recipe)
        cores = f"; {target:.0f}/s needs ≈{math.ceil(target / per_core)} cores" if target and per_core else ""
        rows.append(Row(cfg.recipe, "pipeline", f"{label}{w} workers", b, rate, per_core, seconds=dt,
                        note=f"{n} images after {skip} warm-up batches ({t0 - t_start:.1f} s){cores}{note}",
                        extra={"workers": w, "images": n, "warmup_seconds": t0 - t_start, "main_cpu_seconds": main_cpu,
                               "worker_cpu_seconds": worker_cpu}))
    return rows


def bench_eval_images(cfg: RunConfig, data: DatasetPair, device: torch.device, workers: list[int]) -> list[Row]:
    """One evaluation's images (both splits through the eval transform, onto the device), without
    the model: through the loaders, as every evaluation did before `eval.cache`, and from the cache,
    which the first evaluation fills and every later one reads."""
    n = len(data.train) + len(data.test)  # type: ignore[arg-type]
    rows = []
    for cache, counts in (("off", workers), ("on", [max(workers)])):
        for w in counts:
            ecfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"cache": cache}),
                                          "data": cfg.data.model_copy(update={"num_workers": w})})
            splits = eval_splits(data, ecfg, device)
            passes = []
            with _torch_threads(1 if w == 0 else None):
                for _ in range(2):  # the first starts the workers (loader) or fills the cache
                    t, c = time.perf_counter(), time.process_time()
                    for split in splits:
                        for batch in split:
                            to_device(batch, device)
                    _sync(device)
                    passes.append((time.perf_counter() - t, time.process_time() - c))
            (first, _), (dt, cpu) = passes
            label = f"loader, {w} workers" if cache == "off" else f"cached ({w} workers fill it)"
            per_core = n / cpu if (w == 0 or cache == "on") and cpu > 0 else None
            note = (f"{n} images an evaluation: {dt:.2f} s" + (f", {1e3 * cpu / n:.2f} CPU-ms an image" if per_core else "")
                    + (f"; the first fills the cache: {first:.2f} s" if cache == "on" else f"; the first {first:.2f} s"))
            rows.append(Row(cfg.recipe, "eval images", label, cfg.data.eval_batch_size, n / dt, per_core, seconds=dt,
                            note=note, extra={"workers": w, "cache": cache, "first_seconds": first, "cpu_seconds": cpu}))
    return rows


def bench_device_half(cfg: RunConfig, data: DatasetPair, device: torch.device, repeats: int) -> Row:
    """The device half of views.augment_on=device alone: batches made by the worker half (decoded
    uint8 images and their random draws) already on the device, augmented `repeats` times each."""
    split = RECIPES.get(cfg.recipe)().device_augmentation(cfg)
    device_half = split.on_device
    ds = SeededViews(data.train, split.transform, cfg.seed)
    b = cfg.batch_size
    loader = DataLoader(ds, batch_size=b, sampler=_Keys(len(ds), 2 * b, cfg.seed), drop_last=True,
                        collate_fn=split.collate)
    batches = [to_device(batch, device) for batch in loader]
    device_half(batches[0])  # first call: kernels chosen, normalisation constants on the device
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for batch in batches:
            device_half(batch)
    _sync(device)
    dt = time.perf_counter() - t0
    n = repeats * len(batches) * b
    what = {"DeviceViews": f"× {3 + cfg.views.n_local} views: crop, flip, jitter, grayscale, blur, solarise, "
                           "normalise, erase",
            "DeviceSupervised": ": crop, flip, RandAugment, normalise"}.get(type(device_half).__name__, ": normalise")
    variant = f"device half on {device.type}" + (", compiled" if cfg.compile else "")
    return Row(cfg.recipe, "pipeline", variant, b, n / dt, seconds=dt,
               note=f"{n} images {what} ({1e3 * dt / (n / b):.2f} ms per batch)",
               extra={"images": n, "ms_per_batch": 1e3 * dt / (n / b)})


def _op_name(t: Any) -> str:
    if isinstance(t, (T.RandomApply, T.Compose)):  # name what is applied, not the wrapper
        return "+".join(_op_name(x) for x in t.transforms)
    return type(t).__name__


def _timed(transform: Any, image: Any, ops: dict[str, float]) -> None:
    """Apply `transform`, adding each top-level op's CPU seconds to `ops`."""
    steps = transform.transforms if isinstance(transform, T.Compose) else [transform]
    x = image
    for t in steps:
        c = time.process_time()  # CPU time: what a core spends, whatever else shares it
        x = t(x)
        ops[_op_name(t)] = ops.get(_op_name(t), 0.0) + time.process_time() - c


def pipeline_breakdown(cfg: RunConfig, data: DatasetPair, images: int) -> tuple[list[dict], list[dict]]:
    """CPU milliseconds per image, on one thread, of each view and of each operation summed over
    the views: what would move to the GPU first."""
    transform = RECIPES.get(cfg.recipe)().train_transform(cfg)
    if isinstance(transform, MultiCropTransform):
        parts = [("global 1", transform.global1, 1), ("global 2", transform.global2, 1),
                 ("masked", transform.masked, 1), ("local", transform.local, transform.n_local)]
    else:
        parts = [("transform", transform, 1)]
    per_part: dict[str, dict[str, float]] = {"decode": {}, **{name: {} for name, _, _ in parts}}
    torch.manual_seed(cfg.seed)
    size = len(data.train)  # type: ignore[arg-type]
    n = min(images, size)
    with _torch_threads(1):
        for i in range(n):
            c = time.process_time()
            image, _ = data.train[i * size // n]  # spread over the classes (and their image sizes)
            per_part["decode"]["decode"] = per_part["decode"].get("decode", 0.0) + time.process_time() - c
            for name, fn, reps in parts:
                for _ in range(reps):
                    _timed(fn, image, per_part[name])
    reps = {name: r for name, _, r in parts}
    total = sum(sum(ops.values()) for ops in per_part.values())
    part_rows = [{"recipe": cfg.recipe, "part": name if reps.get(name, 1) == 1 else f"{name} ×{reps[name]}",
                  "ms_per_image": 1e3 * sum(ops.values()) / n, "share": sum(ops.values()) / total}
                 for name, ops in per_part.items()]
    by_op: dict[str, float] = {}
    for ops in per_part.values():
        for op, sec in ops.items():
            by_op[op] = by_op.get(op, 0.0) + sec
    op_rows = [{"recipe": cfg.recipe, "op": op, "ms_per_image": 1e3 * sec / n, "share": sec / total}
               for op, sec in sorted(by_op.items(), key=lambda kv: -kv[1])]
    return part_rows, op_rows


def e2e_overrides(batch_size: int, train_size: int, steps: int) -> dict[str, Any]:
    """A two-epoch run of `steps` steps each, evaluated only after the last epoch (fit always
    evaluates the last): the second epoch's samples_per_s has workers running and compilation done."""
    steps = max(1, min(steps, train_size // batch_size))
    return {"epochs": 2, "optim.warmup_epochs": 0, "optim.cooldown_epochs": 0,
            "data.train_limit": steps * batch_size, "data.test_limit": batch_size, "eval.every": 1000}


def bench_e2e(cfg: RunConfig, data: DatasetPair, flops_per_sample: float | None, peak: float | None,
              variant: str, run_root: Path) -> Row:
    import tempfile

    b = cfg.batch_size
    steps = (cfg.data.train_limit or 0) // b
    run_root.mkdir(parents=True, exist_ok=True)
    # A run directory, so that every epoch writes its checkpoint as training runs do.
    with tempfile.TemporaryDirectory(prefix=".bench-e2e-", dir=run_root) as run_dir:
        t0 = time.perf_counter()
        result = fit(cfg, run_dir=run_dir, data=data, resume=False)
        wall = time.perf_counter() - t0
    if result.status != "completed" or len(result.records) < 2:
        return Row(cfg.recipe, "e2e", variant, b, note=f"fit {result.status}: {result.error}")
    cold, warm = result.records[0], result.records[-1]
    rate = warm["samples_per_s"]
    tflops, mfu = _throughput(flops_per_sample, rate, peak)
    recipe = RECIPES.get(cfg.recipe)()
    augment = "n/a"  # the recipe has one path only
    if recipe.device_augmentation(cfg) is not None:
        on_device = augmentation(recipe, cfg, resolve_device(cfg.device)).on_device
        augment = ("cpu" if on_device is None else
                   "cpu, normalised on the device" if isinstance(on_device, DeviceNormalize) else "device")
    writer = write_mode(cfg.checkpoint_write, resolve_device(cfg.device))
    note = (f"{steps} steps/epoch, {cfg.data.num_workers} workers, views augmented on {augment}; "
            f"waited {100 * warm['data_wait_seconds'] / warm['train_seconds']:.0f}% of it for data; "
            f"epoch 1 {cold['samples_per_s']:.1f}/s; checkpoint ({writer}) {cold['checkpoint_seconds']:.2f} s after "
            f"epoch 1; fit {wall:.1f} s incl. build and eval")
    return Row(cfg.recipe, "e2e", variant, b, rate, None, tflops, mfu, warm["peak_mem_mb"], warm["train_seconds"],
               note, {"steps": steps, "cold_samples_per_s": cold["samples_per_s"], "fit_seconds": wall,
                      "data_wait_seconds": warm["data_wait_seconds"], "checkpoint_write": writer,
                      "checkpoint_seconds": [r["checkpoint_seconds"] for r in result.records],
                      "workers": cfg.data.num_workers, "augment_on": augment,
                      "losses": [cold["loss"], warm["loss"]], "steps_run": warm["step"]})


_STARTUP_CHILD = r"""
import json, sys, time
t0 = time.time()
import torch
t1 = time.time()
from tort_core.config import build_config
from tort_core.data import load_dataset
from tort_core.recipes import RECIPES
from tort_core.trainer import resolve_device
t2 = time.time()
recipe, profile, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg = build_config(recipe, profile, overrides=overrides)
device = resolve_device(cfg.device)
if device.type == "cuda":
    torch.cuda.init(); torch.empty(1, device=device); torch.cuda.synchronize(device)
t3 = time.time()
data = load_dataset(cfg.data.dataset, cfg.data.root)
n = len(data.train) + len(data.test)
t4 = time.time()
system = RECIPES.get(recipe)().build(cfg, data.num_classes, 1).to(device)
if device.type == "cuda":
    torch.cuda.synchronize(device)
t5 = time.time()
print("STARTUP " + json.dumps({"start": t0, "torch": t1 - t0, "tort_core+timm": t2 - t1, "cuda": t3 - t2,
      "dataset": t4 - t3, "model": t5 - t4, "images": n, "device": str(device)}))
"""


def bench_startup(recipe: str, profile: str, overrides: dict[str, Any]) -> Row:
    t_launch = time.time()
    proc = subprocess.run([sys.executable, "-c", _STARTUP_CHILD, recipe, profile, json.dumps(overrides, default=str)],
                          capture_output=True, text=True)
    total = time.time() - t_launch
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("STARTUP ")), None)
    if proc.returncode or line is None:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Row(recipe, "startup", note=f"child failed: {err}")
    phases = json.loads(line.removeprefix("STARTUP "))
    phases["interpreter"] = phases.pop("start") - t_launch
    phases["exit"] = total - sum(phases[k] for k in ("interpreter", "torch", "tort_core+timm", "cuda", "dataset",
                                                      "model"))
    cuda = "n/a" if not phases["device"].startswith("cuda") else f"{phases['cuda']:.2f}"
    note = (f"interpreter {phases['interpreter']:.2f}, torch {phases['torch']:.2f}, tort_core+timm "
            f"{phases['tort_core+timm']:.2f}, CUDA {cuda}, dataset {phases['dataset']:.2f} "
            f"({phases['images']} images), model {phases['model']:.2f}, exit {phases['exit']:.2f} s")
    return Row(recipe, "startup", seconds=total, note=note, extra=phases)


def _python_rate(seconds: float) -> float:
    """Iterations per second of a pure-Python loop: what the training loop's kernel dispatch gets."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            pass
        n += 1000
    return n / seconds


def bench_checkpoint(cfg: RunConfig, num_classes: int, device: torch.device, repeats: int,
                     directory: Path) -> list[Row]:
    """An epoch's checkpoint of the real system (student, teacher, optimiser state), written in the
    loop (`checkpoint_write=sync`) and by the writer process (`background`): what the loop waits."""
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
    rows = []
    # Started first, as fit starts it: its interpreter starts while the sync writes are timed.
    writer = BackgroundWriter() if background_supported() else None
    try:
        sync = []
        for _ in range(repeats):
            t = time.perf_counter()
            save_checkpoint(path, payload())
            sync.append(time.perf_counter() - t)
        size_gb = path.stat().st_size / 1e9
        t_sync = statistics.median(sync)
        rows.append(Row(cfg.recipe, "checkpoint", "sync", seconds=t_sync,
                        note=f"{size_gb:.2f} GB; the loop waits {t_sync:.2f} s ({min(sync):.2f}–{max(sync):.2f}, "
                             f"{repeats} writes)", extra={"bytes": path.stat().st_size, "sync_seconds": sync}))
        if writer is None:
            return rows
        window = max(0.05, t_sync / 2)
        solo = _python_rate(window)
        t = time.perf_counter()
        writer.save(path, payload())  # the first allocates the shared buffer
        first = time.perf_counter() - t
        writer.wait()
        stalls, writes, rates = [], [], []
        for _ in range(repeats):
            t = time.perf_counter()
            writer.save(path, payload())
            stalls.append(time.perf_counter() - t)
            rates.append(_python_rate(window) / solo)  # the loop's Python while the file is written
            writer.wait()
            writes.append(writer.last_write_seconds)
        stall, write, rate = (statistics.median(x) for x in (stalls, writes, rates))
        rows.append(Row(cfg.recipe, "checkpoint", "background", seconds=stall,
                        note=f"the loop waits {stall:.2f} s ({min(stalls):.2f}–{max(stalls):.2f}: the snapshot copy), "
                             f"{t_sync / stall:.1f}× less; the writer process takes {write:.2f} s; meanwhile a Python "
                             f"loop runs at {100 * rate:.0f}% of its solo rate; first save {first:.2f} s (allocating the buffer)",
                        extra={"stall_seconds": stalls, "write_seconds": writes, "python_rate_ratio": rates,
                               "first_save_seconds": first}))
    finally:
        if writer is not None:
            writer.close()
        shutil.rmtree(directory, ignore_errors=True)
    return rows


# A real sweep, as `tort sweep` runs it (load_spec → plan_sweep → run_sweep), in a fresh process.
_SWEEP_CHILD = r"""
import json, sys, time
t0 = time.time()
from rich.console import Console
from tort_core.sweep.runner import plan_sweep, run_sweep
from tort_core.sweep.spec import load_spec
t1 = time.time()
spec_path, results, reuse = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
plan = plan_sweep(load_spec(spec_path), results_dir=results)
t2 = time.time()
out = run_sweep(plan, results_dir=results, wandb=False, progress=False, reuse_actors=reuse,
                console=Console(stderr=True, quiet=True))
print("SWEEP " + json.dumps({"start": t0, "imports": t1 - t0, "plan": t2 - t1, "run_start": t2, "run": time.time() - t2,
      **out.timing, "counts": out.counts()}))
"""

# Trial length of the sweep mode: one short epoch, a few seconds of training on a CPU core (as a
# demo trial would take on a GPU), so that the orchestration around it shows.
SWEEP_TRIAL = {"epochs": 1, "optim.warmup_epochs": 0, "optim.cooldown_epochs": 0, "data.train_limit": 256,
               "data.test_limit": 128}
SWEEP_TRIAL_TINY = {**SWEEP_TRIAL, "batch_size": 16, "data.train_limit": 48, "data.test_limit": 32}


def bench_sweep(recipe: str, overrides: dict[str, Any], trials: int, reuse: bool = True, tiny: bool = False,
                length: str = "short") -> Row:
    """A real `trials`-seed sweep of the demo profile on the local Ray: wall time against the
    training time the store records, and where the rest goes (see README, Performance).
    `length="demo"` keeps the demo profile's own trial length instead of one short epoch."""
    import tempfile
    from datetime import datetime

    import yaml

    from tort_core.store import load_epochs, load_trials

    variant = ("reuse" if reuse else "no reuse") + (", demo length" if length == "demo" else "")
    cut = {} if length == "demo" and not tiny else SWEEP_TRIAL_TINY if tiny else SWEEP_TRIAL
    base = {**cut, **overrides}
    base.pop("device", None)  # the sweep places trials itself: a GPU per trial where there are GPUs
    with tempfile.TemporaryDirectory(prefix="tort-bench-sweep-") as tmp:
        spec = Path(tmp) / "bench_sweep.yaml"
        spec.write_text(yaml.safe_dump({"name": "bench_sweep", "recipe": recipe, "profile": "demo",
                                        "overrides": base, "seeds": trials}, sort_keys=False))
        results = Path(tmp) / "results"
        t_launch = time.time()
        proc = subprocess.run([sys.executable, "-c", _SWEEP_CHILD, str(spec), str(results), "1" if reuse else "0"],
                              capture_output=True, text=True)
        wall = time.time() - t_launch
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SWEEP ")), None)
        if proc.returncode or line is None:
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return Row(recipe, "sweep", variant, note=f"child failed: {err}")
        driver = json.loads(line.removeprefix("SWEEP "))
        rows, epochs = load_trials(results), load_epochs(results)

    stamp = lambda iso: datetime.fromisoformat(iso).timestamp()  # noqa: E731
    spans = sorted((stamp(r["started_at"]), stamp(r["finished_at"])) for r in rows.to_dict("records"))
    slots = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)  # trials running at once, at most
    train = float(epochs["train_seconds"].sum())
    evaluation = float(epochs["eval_seconds"].sum())
    per_trial = epochs.groupby("trial_id")[["train_seconds", "eval_seconds"]].sum().sum(axis=1)
    overhead = rows.set_index("trial_id")["elapsed_seconds"] - per_trial
    fresh = rows.set_index("trial_id")["timing.process_trial"] == 1

    def mean(col: str, mask) -> float | None:
        values = rows.set_index("trial_id").loc[mask, col].dropna()
        return float(values.mean()) if len(values) else None

    parts = {}
    for name, mask in (("fresh", fresh), ("reused", ~fresh)):
        parts[name] = {"trials": int(mask.sum()),
                       "overhead_seconds": float(overhead[mask].mean()) if mask.any() else None,
                       **{k: mean(f"timing.{k}_seconds", mask) for k in ("import", "data", "build", "report")}}
    first_start, last_end = spans[0][0], max(b for _, b in spans)
    phases = {"driver": driver["start"] - t_launch + driver["imports"], "plan": driver["plan"],
              "ray_init": driver["ray_init_seconds"], "setup": driver["setup_seconds"],
              "first_trial": first_start - (driver["run_start"] + driver["ray_init_seconds"] + driver["setup_seconds"]),
              "until_first_trial": first_start - t_launch, "tail": t_launch + wall - last_end,
              "shutdown": driver["shutdown_seconds"]}
    slot_time = wall * slots  # what the sweep had: every slot for the whole wall time
    in_trials = float(overhead.sum())  # in a trial (its start to its end on the driver), not train/eval
    extra = {"trials": int(len(rows)), "status": {str(k): int(v) for k, v in rows["status"].value_counts().items()},
             "slots": slots, "wall": wall, "train_seconds": train, "eval_seconds": evaluation,
             "train_fraction": train / slot_time, "train_eval_fraction": (train + evaluation) / slot_time,
             # the rest of wall × slots: overhead inside trials, and slot time outside any trial
             # (before the first trial, between trials, after the last)
             "trial_overhead_fraction": in_trials / slot_time,
             "outside_trials_fraction": 1 - float(rows["elapsed_seconds"].sum()) / slot_time,
             "phases": phases, "per_trial": parts, "reuse": reuse}
    f, r = parts["fresh"], parts["reused"]
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    pct = lambda key: f"{100 * extra[key]:.0f}%"  # noqa: E731
    note = (f"{len(rows)} trials on {slots} slots: train {train:.1f} s, eval {evaluation:.1f} s; of wall × slots "
            f"train {pct('train_fraction')}, eval {100 * (extra['train_eval_fraction'] - extra['train_fraction']):.0f}%"
            f", per-trial overhead {pct('trial_overhead_fraction')}, outside trials {pct('outside_trials_fraction')}"
            f"; until the first trial {phases['until_first_trial']:.1f} s (driver "
            f"{phases['driver']:.1f}, plan {phases['plan']:.1f}, Ray {phases['ray_init']:.1f}, set-up "
            f"{phases['setup']:.1f}, first worker {phases['first_trial']:.1f}); per trial beyond train+eval: fresh "
            f"worker {fmt(f['overhead_seconds'])} s (imports {fmt(f['import'])}, data {fmt(f['data'])}, build "
            f"{fmt(f['build'])}), reused {fmt(r['overhead_seconds'])} s (data {fmt(r['data'])}, build "
            f"{fmt(r['build'])}, reports {fmt(r['report'])}); tail {phases['tail']:.1f} s")
    return Row(recipe, "sweep", variant, seconds=wall, note=note, extra=extra)


# ---------------------------------------------------------------------------------------------
# Data

class Cycled(Dataset):
    """`base` repeated to `n` items (index i is base[i mod len(base)])."""

    def __init__(self, base: Dataset, n: int):
        self.base, self.n = base, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return self.base[index % len(self.base)]  # type: ignore[arg-type]


class Reencoded(Dataset):
    """Images re-encoded as JPEGs with a given short side, decoded on every access.

    Approximates a dataset stored at a larger resolution than the copy at hand (decode and crop
    cost grow with the source's pixels) without needing that dataset.
    """

    def __init__(self, base: Dataset, short_side: int, n: int):
        import io

        from PIL import Image

        self.blobs, self.labels = [], []
        for i in range(min(n, len(base))):  # type: ignore[arg-type]
            image, label = base[i]
            scale = short_side / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=90)
            self.blobs.append(buf.getvalue())
            self.labels.append(label)

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, index: int):
        import io

        from PIL import Image

        return Image.open(io.BytesIO(self.blobs[index])).convert("RGB"), self.labels[index]


# ---------------------------------------------------------------------------------------------
# Command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="both", choices=[*RECIPE_NAMES, "both"])
    p.add_argument("--profile", default="thesis", help="thesis | demo")
    p.add_argument("--tiny", action="store_true", help="demo profile, smaller model and batch: seconds on a CPU (CI)")
    p.add_argument("--mode", default=",".join(DEFAULT_MODES),
                   help=f"comma-separated subset of {','.join(MODES)} (default: all but sweep)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", default="auto", choices=["auto", "no", "yes", "both"],
                   help="step/e2e variants: eager (no), compiled (yes), both; auto = both on CUDA, eager elsewhere")
    p.add_argument("--batch-size", type=int, help="default: the recipe's (tort 32, sota 64 on thesis)")
    p.add_argument("--steps", type=int, help="timed steps (step) / steps per epoch (e2e)")
    p.add_argument("--warmup", type=int, help="untimed steps before timing (step)")
    p.add_argument("--workers", help="pipeline worker counts, comma-separated (default 0 and the core count)")
    p.add_argument("--images", type=int, help="images timed per pipeline setting")
    p.add_argument("--breakdown-images", type=int, help="images for the per-view cost breakdown (0: none)")
    p.add_argument("--source-short-side", type=int,
                   help="pipeline: re-encode the training images as JPEGs of this short side first")
    p.add_argument("--dataset", help="e.g. imagefolder, flowers102 (default: the profile's)")
    p.add_argument("--data-root", help="local dataset root")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="any config key")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    p.add_argument("--peak-tflops", type=float, help="peak FLOP/s for MFU (default: known GPUs' dense bf16)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--pipeline-parts", default="cpu,worker,half,eval",
                   help="pipeline rows: cpu (all in the workers), worker (the device split's worker half), half (its "
                        "device half), eval (one evaluation's images)")
    p.add_argument("--decoded", action="store_true",
                   help="pipeline: decode the training images once first, as fit does (data.decoded_cache_mb)")
    p.add_argument("--checkpoints", type=int, default=5, help="checkpoint: writes timed per writer")
    p.add_argument("--checkpoint-dir", type=Path, default=Path("results"),
                   help="checkpoint and e2e: where to write checkpoints (a scratch folder in it, removed after); "
                        "the disk your runs use")
    p.add_argument("--trials", type=int, default=8, help="sweep: trials (seeds) of the demo sweep")
    p.add_argument("--reuse", default="yes", choices=["yes", "no", "both"],
                   help="sweep: Ray actor reuse between trials (no: a fresh worker process per trial)")
    p.add_argument("--sweep-trial", default="short", choices=["short", "demo"],
                   help="sweep: short (one epoch of 256 images, seconds a trial, as a GPU would run the demo) or "
                        "demo (the demo profile as `tort sweep -p demo` runs it, minutes a trial on a CPU)")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        p.error(f"--mode: unknown {bad}; choose from {', '.join(MODES)}")
    args.modes = modes
    if args.tiny:
        args.profile = "demo"
    defaults = (dict(steps=3, warmup=1, images=16, breakdown_images=8) if args.tiny
                else dict(steps=20, warmup=5, images=256, breakdown_images=32))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def overrides_for(args: argparse.Namespace, recipe: str, compiled: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.tiny:
        out.update(TINY)
        if recipe == "sota":
            out.pop("views.n_local")
    out["device"] = args.device
    if args.batch_size:
        out["batch_size"] = args.batch_size
    if args.dataset:
        out["data.dataset"] = args.dataset
    if args.data_root:
        out["data.root"] = args.data_root
    out.update(parse_sets(args.sets))
    if compiled:
        out["compile"] = True
    return out


def default_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for key, v in PEAK_TFLOPS if key in name), None)


def environment(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import timm

    return {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version(), "load_avg_start": os.getloadavg()}


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def render(env: dict[str, Any], rows: list[Row], breakdown: list[dict[str, Any]], breakdown_ops: list[dict[str, Any]],
           analyses: dict[str, StepAnalysis], peak: float | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    where = env["gpu"] or f"{env['cpu']}, {env['cores']} cores, {env['torch_threads']} torch threads"
    load = " ".join(f"{x:.2f}" for x in env["load_avg_start"])
    console.print(f"[bold]tort benchmark[/] on {env['device']} ({where}); torch {env['torch']}, timm {env['timm']}; "
                  f"load average at start {load}; peak {_fmt(peak)} TFLOP/s")
    table = Table(show_lines=False)
    for col, justify in (("recipe", "left"), ("mode", "left"), ("variant", "left"), ("batch", "right"),
                         ("samples/s", "right"), ("img/CPU-s", "right"), ("TFLOP/s", "right"), ("MFU", "right"),
                         ("peak MB", "right"), ("s", "right"), ("notes", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in rows:
        table.add_row(r.recipe, r.mode, r.variant, str(r.batch or ""), _fmt(r.samples_per_s), _fmt(r.per_core),
                      "n/a" if r.tflops is None else f"{r.tflops:.3g}", "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%", _fmt(r.peak_mem_mb, 0),
                      _fmt(r.seconds, 2), r.note)
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.device = str(device)
    peak = args.peak_tflops or default_peak(device)
    compile_choice = args.compile if args.compile != "auto" else ("both" if device.type == "cuda" else "no")
    variants = {"no": [False], "yes": [True], "both": [False, True]}[compile_choice]
    # Compiling takes a step or two more to settle; eager gets them too, so that both step rows
    # run the same steps and their losses compare (compare_losses).
    step_warmup = args.warmup + (2 if True in variants else 0)
    recipes = list(RECIPE_NAMES) if args.recipe == "both" else [args.recipe]
    env = environment(device)
    breakdown: list[dict[str, Any]] = []
    breakdown_ops: list[dict[str, Any]] = []
    analyses: dict[str, StepAnalysis] = {}

    def result(partial: bool) -> dict[str, Any]:
        out = {"env": env, "peak_tflops": peak, "profile": args.profile, "tiny": args.tiny, "partial": partial,
               "rows": [asdict(r) for r in rows], "breakdown": breakdown, "breakdown_ops": breakdown_ops,
               "flops_per_step": {k: a.flops_per_step for k, a in analyses.items()}}
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_name(args.json.name + ".tmp")
            tmp.write_text(json.dumps(out, indent=2, default=str))
            os.replace(tmp, args.json)
        return out

    rows = LiveRows(lambda: result(partial=True))

    def add_run(row: Row) -> None:
        """A step or e2e row; a compiled one first notes its losses against its eager twin's."""
        twin = next((r for r in rows if (r.recipe, r.mode, r.variant) == (row.recipe, row.mode, "eager")), None)
        if row.variant == "compiled" and twin is not None:
            compare_losses(row, twin)
        rows.append(row)
    datasets: dict[tuple[str, str], DatasetPair] = {}  # both recipes read the same dataset
    for recipe in recipes:
        cfg = build_config(recipe, args.profile, overrides=overrides_for(args, recipe))
        data = None
        if {"pipeline", "e2e"} & set(args.modes):
            key = (cfg.data.dataset, str(cfg.data.root))
            if key not in datasets:
                datasets[key] = load_dataset(cfg.data.dataset, cfg.data.root)
            data = datasets[key]
        num_classes = data.num_classes if data is not None else (10 if args.profile == "demo" else 102)
        flops_per_sample = None
        if {"step", "e2e", "syncs"} & set(args.modes):
            analyses[recipe] = analyse_step(cfg, num_classes)
            a = analyses[recipe]
            flops_per_sample = a.flops_per_step / cfg.batch_size if a.flops_per_step else None
            if "syncs" in args.modes:
                where = "; ".join(f"{s.op} at {s.where}" for s in a.syncs) or "none"
                rows.append(Row(recipe, "syncs", batch=cfg.batch_size,
                                note=f"{len(a.syncs)} per step: {where}" + (f" (stopped: {a.error})" if a.error else ""),
                                extra={"syncs": [asdict(s) for s in a.syncs], "h2d": [asdict(s) for s in a.h2d],
                                       "flops_per_step": a.flops_per_step, "error": a.error}))
        for compiled in variants:
            variant = "compiled" if compiled else "eager"
            vcfg = build_config(recipe, args.profile, overrides=overrides_for(args, recipe, compiled))
            if "step" in args.modes:
                add_run(bench_step(vcfg, num_classes, device, args.steps, step_warmup, flops_per_sample, peak,
                                   variant))
            if "e2e" in args.modes:
                assert data is not None
                # A small training set (flowers17: 680 images, 10 sota steps) is cycled to --steps
                # steps: each pass draws other views, and a 10-step epoch would time mostly its edges.
                need = args.steps * vcfg.batch_size
                edata = data if len(data.train) >= need else DatasetPair(  # type: ignore[arg-type]
                    Cycled(data.train, need), data.test, data.num_classes, data.name)
                extra = e2e_overrides(vcfg.batch_size, len(edata.train), args.steps)  # type: ignore[arg-type]
                ecfg = build_config(recipe, args.profile, overrides={**overrides_for(args, recipe, compiled), **extra})
                add_run(bench_e2e(ecfg, edata, flops_per_sample, peak, variant, args.checkpoint_dir))
        if "pipeline" in args.modes:
            assert data is not None
            note = ""
            if args.source_short_side:
                need = (math.ceil(args.images / cfg.batch_size) + 4) * cfg.batch_size
                data = DatasetPair(Reencoded(data.train, args.source_short_side, max(need, args.breakdown_images)),
                                   data.test, data.num_classes, data.name)
                note = f"; sources re-encoded at short side {args.source_short_side} px"
            cores = env["cores"] or 1
            workers = ([int(w) for w in args.workers.split(",")] if args.workers
                       else sorted({0, cores}) if not args.tiny else [0, 1])
            if args.decoded:  # as fit keeps them (data.decoded_cache_mb): the pipeline starts from pixels
                t = time.perf_counter()
                kept = DecodedImages(data.train, 2**62, max(workers))
                note += (f"; {kept.cached} training images decoded once first ({kept.nbytes / 2**20:.0f} MB, "
                         f"{time.perf_counter() - t:.1f} s)")
                data = DatasetPair(kept, data.test, data.num_classes, data.name)
            # The pipeline compares both places, whatever `auto` would pick for this run.
            dcfg = cfg.model_copy(update={"views": cfg.views.model_copy(update={"augment_on": "device"})})
            split = RECIPES.get(recipe)().device_augmentation(dcfg)
            parts = set(args.pipeline_parts.split(","))
            if split is None:
                if "cpu" in parts:
                    rows.extend(bench_pipeline(cfg, data, device, workers, args.images, note))
            else:  # both places augmentation can run: all on the CPU, or the workers' half of `device`
                if "cpu" in parts:
                    rows.extend(bench_pipeline(cfg, data, device, workers, args.images, note, label="cpu views, "))
                if "worker" in parts:
                    rows.extend(bench_pipeline(cfg, data, device, workers, args.images, note, transform=split.transform,
                                               label="device views (worker half), ", collate=split.collate))
                if "half" in parts:
                    rows.append(bench_device_half(dcfg, data, device, repeats=2 if args.tiny else 10))
                    if device.type == "cuda":  # compiled too (minutes of compilation on a CPU: not there)
                        rows.append(bench_device_half(dcfg.model_copy(update={"compile": True}), data, device,
                                                      repeats=10))
            if recipe == recipes[0] and "eval" in parts:  # the same for both recipes
                rows.extend(bench_eval_images(cfg, data, device, workers))
            if args.breakdown_images:
                part_rows, op_rows = pipeline_breakdown(cfg, data, args.breakdown_images)
                breakdown.extend(part_rows)
                breakdown_ops.extend(op_rows)
        if "checkpoint" in args.modes:
            rows.extend(bench_checkpoint(cfg, num_classes, device, 2 if args.tiny else args.checkpoints,
                                         args.checkpoint_dir / f".bench-checkpoint-{os.getpid()}"))
        if "startup" in args.modes:
            rows.append(bench_startup(recipe, args.profile, overrides_for(args, recipe)))
        if "sweep" in args.modes:
            for reuse in {"yes": [True], "no": [False], "both": [True, False]}[args.reuse]:
                rows.append(bench_sweep(recipe, overrides_for(args, recipe), args.trials, reuse, args.tiny,
                                       args.sweep_trial))
    env["load_avg_end"] = os.getloadavg()
    render(env, rows, breakdown, breakdown_ops, analyses, peak)
    return result(partial=False)


class LiveRows(list):
    """The rows so far. Each is printed (stderr) as it is measured and the --json file rewritten
    with "partial": true, so a run cut off by a time limit (a lent GPU's 10-minute slot) still
    leaves every row it finished."""

    def __init__(self, save) -> None:
        super().__init__()
        self._save, self._t0 = save, time.perf_counter()

    def append(self, row: Row) -> None:
        self.extend([row])

    def extend(self, new) -> None:
        new = list(new)
        super().extend(new)
        for r in new:
            mfu = "" if r.mfu is None else f", MFU {100 * r.mfu:.1f}%"
            print(f"[{time.perf_counter() - self._t0:.0f} s] {r.recipe} {r.mode} {r.variant}: samples/s "
                  f"{_fmt(r.samples_per_s)}{mfu}, peak MB {_fmt(r.peak_mem_mb, 0)}; {r.note}", file=sys.stderr,
                  flush=True)
        self._save()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
