"""The training loop: `fit(config)` → one metric record per epoch, checkpoints, exact resume.

Read top to bottom: seed → data → recipe system → optimiser and per-step LR schedule → epochs of
(steps, Lookahead sync, evaluation, record, checkpoint, callbacks). Recipes supply the step; the
loop is the same for all of them.

Determinism: every augmentation is a pure function of (seed, epoch, sample index) — see
`SeededViews` — and each epoch reseeds the global RNGs, so a run resumed from its epoch-k
checkpoint continues exactly like an uninterrupted one, with or without loader workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import random
import resource
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from .catalog import MACHINE_METRICS  # noqa: F401 (public API)
from .checkpoint import (CorruptCheckpoint, checkpoint_writer, discard_partial_writes,  # noqa: F401 (public API)
                         load_checkpoint, save_checkpoint)
from .config import RunConfig
from .data import DatasetPair, DecodedImages, Transformed, carve_validation, in_memory, limit, load_dataset
from .device_views import DeviceNormalize
from .errors import ConfigError, DataError, TrainingFailed
from .evaluate import CachedSplit, KnnSettings, evaluate
from .losses import LossContext, teacher_temperature
from .optim import create_optimizer
from .recipes import RECIPES, Augmentation
from .store import write_text_atomic
from .systems import TrainingSystem
from .views import NORMALIZATION, eval_transform

CHECKPOINT = "checkpoint.pt"


# ---------------------------------------------------------------------------------------------
# Callbacks: how records leave the loop (Parquet, progress bars, Ray Tune, wandb).

class Callback:
    def on_fit_start(self, cfg: RunConfig, info: dict[str, Any]) -> None: ...

    def on_step_end(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None: ...

    def on_epoch_end(self, record: dict[str, float], checkpoint: Path | None) -> None:
        """`checkpoint`: where this epoch's checkpoint goes (None: none this epoch). With a background
        writer (`checkpoint_write`) it may still be being written; until it lands the file there is
        the previous checkpoint, whole. fit waits for the last one before it returns."""

    def on_fit_end(self, result: RunResult) -> None: ...


@dataclass
class RunResult:
    status: str  # "completed" | "failed"
    records: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    run_dir: Path | None = None
    config_id: str = ""
    start_epoch: int = 0  # epochs restored from a checkpoint (== len(records): it was already complete)

    @property
    def final(self) -> dict[str, float]:
        return self.records[-1] if self.records else {}


# ---------------------------------------------------------------------------------------------
# Seeding and data

def _mix(*parts: int) -> int:
    """A well-spread 63-bit seed from integers (stable across processes, unlike hash())."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = ((x ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order in which an epoch visits the n training images: a shuffle per (seed, epoch)."""
    g = torch.Generator().manual_seed(_mix(seed, epoch, 1))
    return torch.randperm(n, generator=g).tolist()


class EpochBatches(Sampler):
    """Batches of (epoch, index) keys for epochs `start`…`end` − 1, in one pass: each epoch its own
    shuffle (`epoch_order`), cut into full batches (the remainder dropped).

    One loader iterator spans all the epochs, so the workers run on into the next epoch while the
    trainer evaluates and checkpoints, instead of starting cold after every epoch (on a small
    dataset's few-step epochs that restart costs a batch's worth of augmentation each time)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0, end: int = 1):
        self.n, self.batch_size, self.seed, self.start, self.end = n, batch_size, seed, start, end

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def __len__(self) -> int:
        return self.steps_per_epoch * max(0, self.end - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        b = self.batch_size
        for epoch in range(self.start, self.end):
            order = epoch_order(self.n, self.seed, epoch)
            for step in range(self.steps_per_epoch):
                yield [(epoch, i) for i in order[step * b:(step + 1) * b]]


class SeededViews(Dataset):
    """Training views whose randomness depends only on (seed, epoch, index)."""

    def __init__(self, base: Dataset, transform, seed: int):
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if get_worker_info() is not None:
            return self._view(epoch, index)
        # Without loader workers (data.num_workers 0, as in a one-CPU sweep trial) this runs in the
        # training process: reseeding there would also reset the stream that dropout and stochastic
        # depth draw from, so a run's numbers would depend on num_workers. Its state is put back.
        saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
        try:
            return self._view(epoch, index)
        finally:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])

    def _view(self, epoch: int, index: int):
        s = _mix(self.seed, epoch, index, 2)
        # The CPU generator only: torch.manual_seed would also queue a lazy seed for each
        # accelerator backend, building a Python traceback each time (~1 ms an image).
        torch.default_generator.manual_seed(s)
        random.seed(s)
        np.random.seed(s % 2**32)
        image, label = self.base[index]
        return self.transform(image), label


def _loader(ds: Dataset, cfg: RunConfig, device: torch.device, persistent: bool = True, **kw) -> DataLoader:
    workers = cfg.data.num_workers
    # Starting workers draws a base seed; from its own generator, not the global RNG, or a resumed
    # run (whose persistent workers start in a later epoch) would drift from an uninterrupted one.
    generator = torch.Generator().manual_seed(_mix(cfg.seed, 4))
    return DataLoader(ds, num_workers=workers, persistent_workers=persistent and workers > 0, generator=generator,
                      pin_memory=cfg.data.pin_memory and device.type == "cuda", **kw)


def augmentation(recipe, cfg: RunConfig, device: torch.device) -> Augmentation:
    """The recipe's training augmentation for this run: split with the device (views.augment_on)
    or all in the loader workers."""
    on_device = cfg.views.augment_on == "device" or (cfg.views.augment_on == "auto" and device.type == "cuda")
    split = recipe.device_augmentation(cfg) if on_device else None
    return split if split is not None else Augmentation(recipe.train_transform(cfg))


def eval_splits(data: DatasetPair, cfg: RunConfig, device: torch.device) -> tuple[Iterable, ...]:
    """The k-NN bank (train split), the queries (test split) and, where the data has one, the
    validation split, through the eval transform (normalised as the recipe's training views):
    cached after the first evaluation (`eval.cache`), or through a loader at every one."""
    splits = [data.train, data.test] + ([data.val] if data.val is not None else [])
    size, n = cfg.views.global_size, sum(len(split) for split in splits)  # type: ignore[arg-type]
    cached = cfg.eval.cache == "on" or (
        cfg.eval.cache == "auto" and n * 3 * size * size <= cfg.eval.cache_max_mb * 2**20)
    stats = RECIPES.get(cfg.recipe)().normalization(cfg)
    tf = eval_transform(size, cfg.views.eval_crop_pct, normalize=not cached, stats=stats)
    bs = cfg.data.eval_batch_size
    if not cached:
        return tuple(_loader(Transformed(split, tf), cfg, device, batch_size=bs) for split in splits)
    normalize = DeviceNormalize(*NORMALIZATION[stats])
    return tuple(CachedSplit(_loader(Transformed(split, tf), cfg, device, persistent=False, batch_size=bs), device, bs,
                             normalize) for split in splits)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' requested but CUDA is not available; use --set device=cpu")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------
# Optimiser and schedule

def build_optimizer(system: TrainingSystem, cfg: RunConfig) -> torch.optim.Optimizer:
    """timm's optimizer `cfg.optim.name` over the trainable parameters, with no weight decay on
    norms, biases and (unless optim.decay_tokens) the modules' own no_weight_decay(): ViT's
    position embedding and class token (optim.py: fused step, Lookahead)."""
    module = system.trainable()
    no_decay: set[str] = set()
    for prefix, m in module.named_modules():
        if hasattr(m, "no_weight_decay") and not cfg.optim.decay_tokens:
            no_decay |= {f"{prefix}.{n}" if prefix else n for n in m.no_weight_decay()}
    groups = param_groups_weight_decay(module, cfg.optim.weight_decay, no_weight_decay_list=no_decay)
    extra: dict[str, Any] = {"betas": tuple(cfg.optim.betas)} if "adam" in cfg.optim.name else {}
    device = next(module.parameters()).device
    return create_optimizer(groups, name=cfg.optim.name, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                            momentum=cfg.optim.momentum, fused=cfg.optim.fused, device=device, **extra)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: RunConfig, steps_per_epoch: int) -> CosineLRScheduler:
    """LR: warm-up from warmup_lr, cosine to min_lr at `epochs`, then flat (cool-down); changed at
    every step (`step_update`) or, optim.schedule_unit=epoch, once per epoch (`step(epoch)`, timm's
    create_scheduler). warmup_prefix=false: the cosine's clock includes the warm-up (timm's default)."""
    o = cfg.optim
    unit = 1 if o.schedule_unit == "epoch" else steps_per_epoch
    warmup = o.warmup_epochs * unit
    decay = cfg.epochs * unit - (warmup if o.warmup_prefix else 0)
    return CosineLRScheduler(optimizer, t_initial=max(1, decay), lr_min=o.min_lr, warmup_t=warmup,
                             warmup_lr_init=o.warmup_lr, warmup_prefix=o.warmup_prefix,
                             t_in_epochs=o.schedule_unit == "epoch", cycle_limit=1)


# ---------------------------------------------------------------------------------------------
# Checkpoints: RNG state (the files themselves: checkpoint.py).

def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_payload(cfg: RunConfig, config_id: str, epoch: int, global_step: int, system: TrainingSystem,
                       optimizer: torch.optim.Optimizer, scheduler: CosineLRScheduler,
                       records: list[dict[str, float]]) -> dict[str, Any]:
    """Everything a run needs to continue after `epoch` exactly as if it had not stopped."""
    return {
        "epoch": epoch, "global_step": global_step, "config_id": config_id, "config": cfg.model_dump(mode="json"),
        "system": system.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": _rng_state(), "records": records,
    }


# ---------------------------------------------------------------------------------------------

def _resume_state(path: Path, on_corrupt: str) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None to start over (a corrupt one, with on_corrupt="restart")."""
    try:
        return load_checkpoint(path)
    except CorruptCheckpoint as err:
        if on_corrupt != "restart":
            raise DataError(f"{err}; move it away (or pass --no-resume) to start the run over") from None
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"{err}; moved to {aside.name}, starting the run over", RuntimeWarning, stacklevel=3)
        return None


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this run so far: CUDA's allocated maximum, or the process's maximum RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def fit(cfg: RunConfig, run_dir: Path | str | None = None, callbacks: Sequence[Callback] = (),
        resume: bool = True, data: DatasetPair | None = None, on_corrupt: str = "raise") -> RunResult:
    """Train `cfg` to the end (or resume it from `run_dir`'s checkpoint) and return its records.

    A checkpoint that cannot be read (truncated by a full disk, say) raises DataError naming it
    (`on_corrupt="raise"`), or is moved aside to `checkpoint.pt.corrupt` and the run starts over
    (`on_corrupt="restart"`: a sweep, whose `--resume` would otherwise fail the trial every time).
    """
    with torch_threads(cfg.threads or default_threads(cfg.data.num_workers)):
        return _fit(cfg, run_dir, callbacks, resume, data, on_corrupt)


def default_threads(workers: int) -> int:
    """Torch threads for a run: the cores this process may use, less one per loader worker (each
    keeps a core busy augmenting), at least 1. More threads than free cores do not add speed:
    they contend with the workers and with each other, and a busy machine makes that far worse."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - workers)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to `n` for the block, then restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit(cfg: RunConfig, run_dir: Path | str | None, callbacks: Sequence[Callback], resume: bool,
         data: DatasetPair | None, on_corrupt: str) -> RunResult:
    run_dir = Path(run_dir).resolve() if run_dir is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    config_id = cfg.content_hash()
    device = resolve_device(cfg.device)
    autocast = autocast_for(cfg, device)

    # Data: the splits data.splits names (a caller's `data` holds the standard ones), cut to the
    # limits, a validation split carved out of the training split (data.val_fraction).
    seed_all(cfg.seed)
    if data is None or cfg.data.splits != "standard":
        data = load_dataset(cfg.data.dataset, cfg.data.root, cfg.data.splits)
    data = limit(data, cfg.data.train_limit, cfg.data.test_limit)
    if cfg.data.val_fraction > 0:
        data = carve_validation(data, cfg.data.val_fraction)
    if cfg.data.decoded_cache_mb > 0 and not in_memory(data.train):
        # Decoded once, by the loader workers, before the training loader forks its own (which
        # then share these pages); the generator keeps the global RNGs untouched.
        decoded = DecodedImages(data.train, cfg.data.decoded_cache_mb * 2**20, cfg.data.num_workers,
                                torch.Generator().manual_seed(_mix(cfg.seed, 5)))
        data = dataclasses.replace(data, train=decoded)
    recipe = RECIPES.get(cfg.recipe)()
    augment = augmentation(recipe, cfg, device)
    train_ds = SeededViews(data.train, augment.transform, cfg.seed)
    if len(train_ds) < cfg.batch_size:
        raise ConfigError(f"batch_size: {cfg.batch_size} exceeds the {len(train_ds)} training images of "
                          f"'{cfg.data.dataset}'")
    batches = EpochBatches(len(train_ds), cfg.batch_size, cfg.seed)
    steps_per_epoch = batches.steps_per_epoch
    bank_loader, test_loader, *val_loader = eval_splits(data, cfg, device)
    knn = KnnSettings(cfg.eval.knn_k, cfg.eval.knn_temperature, cfg.eval.knn_protocol, cfg.eval.knn_weights)

    # Model, optimiser, schedule
    system = recipe.build(cfg, data.num_classes, steps_per_epoch).to(device)
    optimizer = build_optimizer(system, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    clip_params = [p for p in system.trainable().parameters() if p.requires_grad]
    total_steps = cfg.total_epochs * steps_per_epoch

    start_epoch, global_step, records = 0, 0, []
    ckpt_path = run_dir / CHECKPOINT if run_dir is not None else None
    state = _resume_state(ckpt_path, on_corrupt) if resume and ckpt_path is not None and ckpt_path.exists() else None
    if state is not None:
        if state["config_id"] != config_id:
            raise ConfigError(f"run dir '{run_dir}' holds a checkpoint of a different config "
                              f"({state['config_id']} ≠ {config_id}); use another output directory")
        system.load_state_dict(state["system"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch, global_step, records = state["epoch"] + 1, state["global_step"], list(state["records"])
        if records:
            # The checkpoint was taken before its own epoch's record learnt what the write cost.
            records[-1].setdefault("checkpoint_seconds", math.nan)
    if run_dir is not None:
        # The run directory's config.yaml, written here only (tort train and sweeps alike), once a
        # checkpoint already there is known to be this config's: a refused resume leaves it as it was.
        write_text_atomic(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), run_dir / "config.yaml")

    info = {"config_id": config_id, "device": str(device), "steps_per_epoch": steps_per_epoch,
            "total_epochs": cfg.total_epochs, "start_epoch": start_epoch, "num_classes": data.num_classes,
            "train_size": len(data.train), "test_size": len(data.test),  # type: ignore[arg-type]
            "val_size": len(data.val) if data.val is not None else 0,  # type: ignore[arg-type]
            "parameters": sum(p.numel() for p in clip_params),
            "records": list(records)}  # epochs restored from the checkpoint (a sweep re-reports them)
    for cb in callbacks:
        cb.on_fit_start(cfg, info)

    result = RunResult("completed", records, run_dir=run_dir, config_id=config_id, start_epoch=start_epoch)
    batches.start, batches.end = start_epoch, cfg.total_epochs
    train_loader = _loader(train_ds, cfg, device, batch_sampler=batches, collate_fn=augment.collate)
    stream = iter(train_loader) if start_epoch < cfg.total_epochs else iter(())
    writer = None
    if ckpt_path is not None:
        discard_partial_writes(ckpt_path)  # this run directory is ours (a sweep holds its lock)
        if start_epoch < cfg.total_epochs:
            writer = checkpoint_writer(cfg.checkpoint_write, device)
    try:
        for epoch in range(start_epoch, cfg.total_epochs):
            record = _train_epoch(cfg, system, optimizer, scheduler, itertools.islice(stream, steps_per_epoch),
                                  steps_per_epoch, clip_params, epoch, global_step, total_steps, data.num_classes,
                                  device, autocast, callbacks, augment.on_device)
            global_step += steps_per_epoch
            scheduler.step(epoch + 1)  # the next epoch's LR, where it changes per epoch (else a no-op)
            if hasattr(optimizer, "sync_lookahead"):
                optimizer.sync_lookahead()  # evaluate (and checkpoint) the slow weights
            t_eval = time.perf_counter()
            if (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == cfg.total_epochs:
                record.update(evaluate(system, bank_loader, test_loader, data.num_classes, knn, device, autocast,
                                       val_loader[0] if val_loader else None))
            record["eval_seconds"] = time.perf_counter() - t_eval
            record["epoch_seconds"] = record["train_seconds"] + record["eval_seconds"]
            record["peak_mem_mb"] = peak_memory_mb(device)
            records.append(record)
            checkpoint = ckpt_path if ckpt_path is not None and (
                (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.total_epochs) else None
            t_save = time.perf_counter()
            if checkpoint is not None:
                # A background writer returns once it holds a snapshot; the loop goes on while
                # the file is written. The last one is waited for, so the run ends with it on disk.
                writer.save(checkpoint, checkpoint_payload(cfg, config_id, epoch, global_step, system, optimizer,
                                                           scheduler, records))
                if epoch + 1 == cfg.total_epochs:
                    writer.wait()
            # After the save, so the checkpoint's copy of this epoch's record lacks the two updates
            # below. With a background writer it is the loop's stall: waiting for the previous
            # write, and the snapshot copy.
            record["checkpoint_seconds"] = time.perf_counter() - t_save if checkpoint is not None else 0.0
            record["epoch_seconds"] += record["checkpoint_seconds"]
            for cb in callbacks:
                cb.on_epoch_end(record, checkpoint)
    except TrainingFailed as err:
        result.status, result.error = "failed", str(err)
    except BaseException:
        if writer is not None:
            # The checkpoint in flight still lands (a Ctrl-C reaches the main thread only, not the
            # writer's); a failure of that write must not replace the error on its way out.
            with contextlib.suppress(Exception):
                writer.release()
        raise
    if writer is not None:
        writer.release()  # the last checkpoint is on disk before fit returns; its snapshot is freed
    for cb in callbacks:
        cb.on_fit_end(result)
    return result


def _train_epoch(cfg, system, optimizer, scheduler, batches, steps, clip_params, epoch, global_step,
                 total_steps, num_classes, device, autocast, callbacks, device_augment=None) -> dict[str, float]:
    seed_all(_mix(cfg.seed, epoch, 3))
    system.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sums: dict[str, torch.Tensor] = {}
    extra: dict[str, float] = {}
    lr = optimizer.param_groups[0]["lr"]
    images, n_steps, data_wait = 0, 0, 0.0
    stream = iter(batches)
    t0 = time.perf_counter()
    for i in itertools.count():
        t_wait = time.perf_counter()
        batch = next(stream, None)
        data_wait += time.perf_counter() - t_wait
        if batch is None:
            break
        batch = to_device(batch, device)
        if device_augment is not None:
            batch = device_augment(batch)
        ctx = LossContext(epoch=epoch, step=global_step + i, total_steps=total_steps, num_classes=num_classes)
        metrics, scalars = train_step(cfg, system, optimizer, scheduler, clip_params, batch, ctx, autocast)
        lr = scalars.pop("lr")
        extra = scalars
        # Accumulate on the device: no host sync per step.
        for k, v in metrics.items():
            v = v.detach().float()
            sums[k] = sums[k] + v if k in sums else v.clone()
        images += batch[-1].shape[0]
        n_steps += 1
        if (i + 1) % cfg.finite_check_every == 0:
            _check_finite(sums, epoch, global_step + i)
        for cb in callbacks:
            cb.on_step_end(epoch, i, steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the host runs ahead of the GPU: count the steps it queued
    train_seconds = time.perf_counter() - t0
    means = {k: v / max(n_steps, 1) for k, v in sums.items()}
    _check_finite(means, epoch, global_step + n_steps - 1)
    record: dict[str, float] = {k: float(v) for k, v in means.items()}
    if "train_top1" in record:
        record["train_top1"] *= 100.0
    record.update({
        "epoch": epoch + 1, "step": global_step + n_steps, "lr": lr,
        "teacher_temp": teacher_temperature(epoch, cfg.loss.teacher_temp, cfg.loss.warmup_teacher_temp,
                                            cfg.loss.warmup_teacher_temp_epochs), **extra,
        "train_seconds": train_seconds, "samples_per_s": images / max(train_seconds, 1e-9),
        # The loop waiting for the loader: an upper bound on the device's idle time for want of data.
        "data_wait_seconds": data_wait,
    })
    return record


def autocast_for(cfg: RunConfig, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """The context each step runs its forward in: bf16 autocast on CUDA with `amp`, else none."""
    if cfg.amp and device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def train_step(cfg: RunConfig, system: TrainingSystem, optimizer, scheduler, clip_params: list[torch.Tensor],
               batch, ctx: LossContext, autocast=contextlib.nullcontext, foreach: bool | None = True):
    """One optimiser step: forward, backward, clip, step, per-step LR, EMA.

    Returns the step's metrics as device tensors (never synced here) and host scalars (the lr the
    step used, the EMA momentum). The benchmark calls this too, so it measures the real step.
    """
    with autocast():
        loss, metrics = system.training_step(batch, ctx)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.clip_grad is not None:
        metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(clip_params, cfg.optim.clip_grad, foreach=foreach)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step_update(num_updates=ctx.step + 1)
    scalars = {"lr": lr, **system.after_optimizer_step(ctx)}
    metrics["loss"] = loss.detach()
    return metrics, scalars


def _check_finite(sums: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    losses = {k: v for k, v in sums.items() if k.startswith("loss")}
    if not losses:
        return
    values = torch.stack([v.reshape(()) for v in losses.values()])
    if not bool(torch.isfinite(values).all()):
        bad = ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items() if not math.isfinite(float(v)))
        raise TrainingFailed(f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {bad}")


def to_device(batch, device: torch.device):
    """Tensors of a (nested) batch moved to `device`; lists and tuples keep their shape."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(x, device) for x in batch)
    return batch
