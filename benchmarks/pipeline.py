"""Mode `pipeline`: the data pipeline alone. The recipe's real training transform, `SeededViews`
and a DataLoader with N workers: images/s, and images per CPU-second of the processes doing the
work (what one core delivers, even on a shared machine), hence the cores the targets need; plus
the CPU cost of each view. Both places augmentation can run (views.augment_on): all on the CPU,
and the worker half of `device` (decode and the random draws), plus the device half alone; and
one evaluation's images through the loaders and from the eval cache."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from itertools import count
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T

from benchmarks.common import TARGETS, Row, sync
from tort_core.config import RunConfig
from tort_core.data import DatasetPair, DecodedImages
from tort_core.recipes import RECIPES
from tort_core.trainer import SeededViews, epoch_order, eval_splits, to_device
from tort_core.views import MultiCropTransform


def run(args: argparse.Namespace, cfg: RunConfig, data: DatasetPair, device: torch.device, cores: int,
        eval_images: bool) -> tuple[list[Row], list[dict], list[dict]]:
    """The mode's rows for one recipe, and its cost breakdown by view and by operation (`eval_images`:
    also time one evaluation's images, the same for every recipe)."""
    rows: list[Row] = []
    note = ""
    if args.source_short_side:
        need = (math.ceil(args.images / cfg.batch_size) + 4) * cfg.batch_size
        data = DatasetPair(Reencoded(data.train, args.source_short_side, max(need, args.breakdown_images)),
                           data.test, data.num_classes, data.name)
        note = f"; sources re-encoded at short side {args.source_short_side} px"
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
    split = RECIPES.get(cfg.recipe)().device_augmentation(dcfg)
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
                rows.append(bench_device_half(dcfg.model_copy(update={"compile": True}), data, device, repeats=10))
    if eval_images and "eval" in parts:
        rows.extend(bench_eval_images(cfg, data, device, workers))
    part_rows, op_rows = pipeline_breakdown(cfg, data, args.breakdown_images) if args.breakdown_images else ([], [])
    return rows, part_rows, op_rows


class Keys(Sampler):
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
def torch_threads(n: int | None):
    """torch's intra-op threads set to `n` for the block (None: unchanged); one core is what a
    loader worker process gets (DataLoader sets 1 there)."""
    threads = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cpu_seconds(pid: int) -> float | None:
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
        loader = DataLoader(ds, batch_size=b, sampler=Keys(len(ds), n_batches * b, cfg.seed), num_workers=w,
                            drop_last=True, pin_memory=cfg.data.pin_memory and device.type == "cuda",
                            collate_fn=collate)
        with torch_threads(1 if w == 0 else None):
            t_start = time.perf_counter()
            it = iter(loader)
            for _ in range(skip):
                next(it)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n_batches - skip):
                next(it)
            dt, main_cpu = time.perf_counter() - t0, time.process_time() - c0
            # Workers' CPU time from their start: every batch they made, warm-up ones included.
            worker_cpu = [cpu_seconds(p.pid) for p in getattr(it, "_workers", [])]
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
            with torch_threads(1 if w == 0 else None):
                for _ in range(2):  # the first starts the workers (loader) or fills the cache
                    t, c = time.perf_counter(), time.process_time()
                    for split in splits:
                        for batch in split:
                            to_device(batch, device)
                    sync(device)
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
    loader = DataLoader(ds, batch_size=b, sampler=Keys(len(ds), 2 * b, cfg.seed), drop_last=True,
                        collate_fn=split.collate)
    batches = [to_device(batch, device) for batch in loader]
    device_half(batches[0])  # first call: kernels chosen, normalisation constants on the device
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for batch in batches:
            device_half(batch)
    sync(device)
    dt = time.perf_counter() - t0
    n = repeats * len(batches) * b
    what = {"DeviceViews": f"× {3 + cfg.views.n_local} views: crop, flip, jitter, grayscale, blur, solarise, "
                           "normalise, erase",
            "DeviceSupervised": ": crop, flip, RandAugment, normalise"}.get(type(device_half).__name__, ": normalise")
    variant = f"device half on {device.type}" + (", compiled" if cfg.compile else "")
    return Row(cfg.recipe, "pipeline", variant, b, n / dt, seconds=dt,
               note=f"{n} images {what} ({1e3 * dt / (n / b):.2f} ms per batch)",
               extra={"images": n, "ms_per_batch": 1e3 * dt / (n / b)})


def op_name(t: Any) -> str:
    if isinstance(t, (T.RandomApply, T.Compose)):  # name what is applied, not the wrapper
        return "+".join(op_name(x) for x in t.transforms)
    return type(t).__name__


def timed(transform: Any, image: Any, ops: dict[str, float]) -> None:
    """Apply `transform`, adding each top-level op's CPU seconds to `ops`."""
    steps = transform.transforms if isinstance(transform, T.Compose) else [transform]
    x = image
    for t in steps:
        c = time.process_time()  # CPU time: what a core spends, whatever else shares it
        x = t(x)
        ops[op_name(t)] = ops.get(op_name(t), 0.0) + time.process_time() - c


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
    with torch_threads(1):
        for i in range(n):
            c = time.process_time()
            image, _ = data.train[i * size // n]  # spread over the classes (and their image sizes)
            per_part["decode"]["decode"] = per_part["decode"].get("decode", 0.0) + time.process_time() - c
            for name, fn, reps in parts:
                for _ in range(reps):
                    timed(fn, image, per_part[name])
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

