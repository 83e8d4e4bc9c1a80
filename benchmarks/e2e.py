"""Mode `e2e`: the real `trainer.fit` for two short epochs (augmentation, all losses, EMA, Lookahead,
metric collection, each epoch's checkpoint); samples/s is the trainer's own `samples_per_s` of the
second epoch (workers up, compilation done) and of the first."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from benchmarks.common import Row, throughput
from tort_core.checkpoint import write_mode
from tort_core.config import RunConfig
from tort_core.data import DatasetPair
from tort_core.device_views import DeviceNormalize
from tort_core.recipes import RECIPES
from tort_core.trainer import augmentation, fit, resolve_device


def cycled_to(data: DatasetPair, steps: int, batch_size: int) -> DatasetPair:
    """`data` with its training split cycled to `steps` batches where it is smaller: a small training
    set (flowers17: 680 images, 10 sota steps) would time mostly an epoch's edges; each pass draws
    other views."""
    need = steps * batch_size
    if len(data.train) >= need:  # type: ignore[arg-type]
        return data
    return DatasetPair(Cycled(data.train, need), data.test, data.num_classes, data.name)


def e2e_overrides(batch_size: int, train_size: int, steps: int) -> dict[str, Any]:
    """A two-epoch run of `steps` steps each, evaluated only after the last epoch (fit always
    evaluates the last): the second epoch's samples_per_s has workers running and compilation done."""
    steps = max(1, min(steps, train_size // batch_size))
    return {"epochs": 2, "optim.warmup_epochs": 0, "optim.cooldown_epochs": 0,
            "data.train_limit": steps * batch_size, "data.test_limit": batch_size, "eval.every": 1000}


def bench_e2e(cfg: RunConfig, data: DatasetPair, flops_per_sample: float | None, peak: float | None,
              variant: str, run_root: Path) -> Row:
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
    tflops, mfu = throughput(flops_per_sample, rate, peak)
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


class Cycled(Dataset):
    """`base` repeated to `n` items (index i is base[i mod len(base)])."""

    def __init__(self, base: Dataset, n: int):
        self.base, self.n = base, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return self.base[index % len(self.base)]  # type: ignore[arg-type]

