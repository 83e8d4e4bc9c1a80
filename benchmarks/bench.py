"""How fast is one training run, and which part limits it?

    python benchmarks/bench.py --recipe tort --profile thesis --device cuda \
        --dataset imagefolder --data-root /data/flowers17
    python benchmarks/bench.py --tiny          # CPU-sized model and views, seconds: what CI runs

Modes (`--mode`, comma-separated; default all):

One module per mode (benchmarks/<mode>.py); this one parses the arguments and runs the modes.

  step      the training step alone: synthetic views already on the device, the real
            TrainingSystem (all losses), backward, clipping, the real optimiser (AdamW in
            Lookahead for tort), the LR schedule and the EMA teacher update.
  pipeline  the data pipeline alone: the recipe's real training transform, `SeededViews`, a
            DataLoader with N workers; images/s, and images per CPU-second of the processes doing
            the work (what one core delivers, even on a shared machine), hence the cores needed
            for the H100 targets; plus the CPU cost of each view. Both places augmentation can
            run (views.augment_on): all on the CPU, and the worker half of `device` (decode and
            the random draws), plus the device half alone (on --device).
  e2e       the real `trainer.fit` for two short epochs (augmentation, all losses, EMA, Lookahead,
            metric collection); samples/s is the trainer's own `samples_per_s` of the second epoch
            (workers up, compilation done) and of the first.
  checkpoint  an epoch's checkpoint of the real system and optimiser state, written in the loop
            (sync), by tort's writer thread (background) and by torch.distributed.checkpoint's
            async_save: how long the loop waits, when the file is in place, how fast Python runs
            meanwhile (--checkpoint-dir: the disk to write to).
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
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (python benchmarks/bench.py): import the package from the repository
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from benchmarks import checkpoint, e2e, pipeline, step, syncs  # noqa: E402
from benchmarks.common import TINY, LiveRows, Row, default_peak, environment  # noqa: E402
from benchmarks.report import render  # noqa: E402
from benchmarks.startup import bench_startup  # noqa: E402
from benchmarks.sweep import bench_sweep  # noqa: E402
from tort_core.catalog import DATASET_INFO, RECIPE_INFO  # noqa: E402
from tort_core.config import build_config, parse_sets  # noqa: E402
from tort_core.data import DatasetPair, load_dataset  # noqa: E402
from tort_core.errors import ConfigError, DataError  # noqa: E402
from tort_core.trainer import resolve_device  # noqa: E402

MODES = ("step", "pipeline", "e2e", "checkpoint", "startup", "syncs", "sweep")
DEFAULT_MODES = MODES[:-1]  # sweep starts Ray and runs a whole sweep: only when asked for


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="both", choices=[*RECIPE_INFO, "both"])
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
    p.add_argument("--checkpoint-writers", default=",".join(checkpoint.WRITERS),
                   help=f"checkpoint: comma-separated subset of {','.join(checkpoint.WRITERS)}")
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
    args.checkpoint_writers = tuple(w.strip() for w in args.checkpoint_writers.split(",") if w.strip())
    if set(args.checkpoint_writers) - set(checkpoint.WRITERS):
        p.error(f"--checkpoint-writers: choose from {', '.join(checkpoint.WRITERS)}")
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
    recipes = list(RECIPE_INFO) if args.recipe == "both" else [args.recipe]
    env = environment(device)
    breakdown: list[dict[str, Any]] = []
    breakdown_ops: list[dict[str, Any]] = []
    analyses: dict[str, syncs.StepAnalysis] = {}

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
            step.compare_losses(row, twin)
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
        # Without loading it, a dataset's classes are the catalog's (an ImageFolder tree's: 102, a stand-in).
        num_classes = data.num_classes if data is not None else DATASET_INFO[cfg.data.dataset].classes or 102
        flops_per_sample = None
        if {"step", "e2e", "syncs"} & set(args.modes):
            analyses[recipe] = a = syncs.analyse_step(cfg, num_classes)
            flops_per_sample = a.flops_per_step / cfg.batch_size if a.flops_per_step else None
            if "syncs" in args.modes:
                rows.append(syncs.row(recipe, cfg.batch_size, a))
        for compiled in variants:
            variant = "compiled" if compiled else "eager"
            vcfg = build_config(recipe, args.profile, overrides=overrides_for(args, recipe, compiled))
            if "step" in args.modes:
                add_run(step.bench_step(vcfg, num_classes, device, args.steps, step_warmup, flops_per_sample, peak,
                                        variant))
            if "e2e" in args.modes:
                assert data is not None
                edata = e2e.cycled_to(data, args.steps, vcfg.batch_size)
                extra = e2e.e2e_overrides(vcfg.batch_size, len(edata.train), args.steps)  # type: ignore[arg-type]
                ecfg = build_config(recipe, args.profile, overrides={**overrides_for(args, recipe, compiled), **extra})
                add_run(e2e.bench_e2e(ecfg, edata, flops_per_sample, peak, variant, args.checkpoint_dir))
        if "pipeline" in args.modes:
            assert data is not None
            new_rows, part_rows, op_rows = pipeline.run(args, cfg, data, device, env["cores"] or 1,
                                                        eval_images=recipe == recipes[0])  # the same for both
            rows.extend(new_rows)
            breakdown.extend(part_rows)
            breakdown_ops.extend(op_rows)
        if "checkpoint" in args.modes:
            rows.extend(checkpoint.bench_checkpoint(cfg, num_classes, device, 2 if args.tiny else args.checkpoints,
                                                    args.checkpoint_dir / f".bench-checkpoint-{os.getpid()}",
                                                    args.checkpoint_writers))
        if "startup" in args.modes:
            rows.append(bench_startup(recipe, args.profile, overrides_for(args, recipe)))
        if "sweep" in args.modes:
            for reuse in {"yes": [True], "no": [False], "both": [True, False]}[args.reuse]:
                rows.append(bench_sweep(recipe, overrides_for(args, recipe), args.trials, reuse, args.tiny,
                                        args.sweep_trial))
    env["load_avg_end"] = os.getloadavg()
    render(env, rows, breakdown, breakdown_ops, analyses, peak)
    return result(partial=False)


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
