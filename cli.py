"""The `tort` command line: thin wrappers that parse, call the library, and render.

Every user mistake surfaces as a `TortError` and leaves as one line on stderr with exit code 2;
a failed run (e.g. a non-finite loss) exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console

from tort_core.catalog import DATASET_INFO, PROFILE_INFO, RECIPE_INFO
from tort_core.errors import STORAGE_ERRNOS, ConfigError, TortError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="tort: train ViTs on small data with Tort, sweep, compare, report.")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

# Help text names tort's own recipes, profiles and datasets from the catalog; `tort recipes` and
# `tort datasets` list them with installed plug-ins.
RECIPE = typer.Option("tort", "--recipe", "-r", help=f"training recipe: {', '.join(RECIPE_INFO)} (`tort recipes`)")
PROFILE = typer.Option("thesis", "--profile", "-p",
                       help="; ".join(f"{p.name}: {p.summary}" for p in PROFILE_INFO.values()))
SETS = typer.Option(None, "--set", "-s", help="override any config key: --set loss.teacher_temp=0.06 (repeatable)")


# The named options of `tort train` and `tort compare`, by the config key each sets.
FLAGS = {"data.dataset": "--dataset", "data.root": "--data-root", "model.name": "--model", "epochs": "--epochs",
         "seed": "--seed", "model.init": "--init", "device": "--device", "threads": "--threads"}


def _overrides(sets: Optional[list[str]], **named) -> dict:
    """Named options and --set overrides as one dict; a key given by both, with different values,
    is an error (neither silently wins)."""
    from tort_core.config import parse_sets

    overrides = {k: v for k, v in named.items() if v is not None}
    for key, value in parse_sets(sets).items():
        if key in overrides and str(overrides[key]) != str(value):
            raise ConfigError(f"{key} is given twice, {FLAGS.get(key, key)} {overrides[key]} and --set {key}={value}; "
                              f"pass one")
        overrides[key] = value
    return overrides


@app.command()
def train(
    recipe: str = RECIPE,
    profile: str = PROFILE,
    mode: str = typer.Option("scratch", help="scratch, or finetune (needs --init)"),
    dataset: Optional[str] = typer.Option(None, help=f"{', '.join(DATASET_INFO)} (`tort datasets`)"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="local dataset root (nothing is downloaded)"),
    model: Optional[str] = typer.Option(None, help="any timm model name"),
    epochs: Optional[int] = typer.Option(None, help="warm-up + cosine epochs (cool-down comes on top)"),
    seed: Optional[int] = typer.Option(None, min=0),
    init: Optional[Path] = typer.Option(None, "--init", help="local checkpoint to start from (fine-tuning)"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: the free cores "
                                                                          "less one per loader worker)"),
    sets: Optional[list[str]] = SETS,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<recipe>-<profile>-<id>)"),
    resume: bool = typer.Option(True, help="continue from the run directory's checkpoint if there is one"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train one run; write metrics.parquet, summary.json and checkpoint.pt to the run directory."""
    from tort_core.config import build_config, check_root_used

    if init is not None:
        init = init.expanduser().resolve()
    named = {"data.dataset": dataset, "data.root": str(data_root.expanduser().resolve()) if data_root else None,
             "model.name": model, "epochs": epochs, "seed": seed, "model.init": str(init) if init else None,
             "device": device, "threads": threads}
    overrides = _overrides(sets, **named)
    cfg = build_config(recipe, profile, mode, overrides, where="tort train")
    if "data.root" in overrides:
        check_root_used({cfg.data.dataset}, "--data-root" if data_root else "--set data.root")
    # The config is valid: only now the modules that import torch.
    from tort_core.data import load_dataset
    from tort_core.progress import RichProgress
    from tort_core.results import ParquetRecorder, SummaryWriter
    from tort_core.trainer import fit

    data = load_dataset(cfg.data.dataset, cfg.data.root)  # a bad root fails here, before anything is written
    run_dir = (out_dir or Path("runs") / f"{cfg.recipe}-{cfg.profile}-{cfg.data.dataset}-s{cfg.seed}-{cfg.content_hash()}")
    _will_be_writable(run_dir, "--out")
    run_dir = run_dir.expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)  # fit writes config.yaml there
    meta = {"config_id": cfg.content_hash(), "recipe": cfg.recipe, "profile": cfg.profile, "fidelity": cfg.fidelity,
            "dataset": cfg.data.dataset, "seed": cfg.seed, "model": cfg.model.name}
    callbacks = [ParquetRecorder(run_dir / "metrics.parquet", meta), SummaryWriter(run_dir / "summary.json", meta)]
    if progress:
        callbacks.append(RichProgress(err))
    err.print(f"run {meta['config_id']}: {cfg.recipe} / {cfg.fidelity} / {cfg.profile} / {cfg.data.dataset} / "
              f"{cfg.model.name} "
              f"→ {run_dir}", markup=False)
    result = fit(cfg, run_dir, callbacks=callbacks, resume=resume, data=data)
    if result.status != "completed":
        err.print(f"run failed: {result.error}", markup=False)
        raise typer.Exit(1)
    final = result.final
    scores = (f"top1 {final.get('test_top1', float('nan')):.2f}%  knn {final.get('knn_top1', float('nan')):.2f}%  "
              f"→ {run_dir / 'metrics.parquet'}")
    if result.start_epoch >= len(result.records):
        out.print(f"already complete: {len(result.records)} epochs in {run_dir}, nothing trained now "
                  f"(--no-resume starts it over): {scores}", markup=False)
        return
    resumed = f" (resumed after epoch {result.start_epoch})" if result.start_epoch else ""
    out.print(f"completed {len(result.records)} epochs{resumed}: {scores}", markup=False)
    _note_collapse(final, cfg.heads.out_dim)


def _note_collapse(final: dict, out_dim: int) -> None:
    """A teacher that ended near the uniform distribution taught nothing: say so under the scores."""
    import math

    from analysis.health import COLLAPSE_TOLERANCE

    entropy = final.get("teacher_entropy")
    if entropy is None or not math.isfinite(entropy) or entropy < (1 - COLLAPSE_TOLERANCE) * math.log(out_dim):
        return
    err.print(f"note: the teacher ended near the uniform distribution (teacher_entropy {entropy:.2f} of "
              f"log {out_dim} = {math.log(out_dim):.2f} nats): distillation carried no information at the end, "
              f"and the scores come from the other losses", markup=False)


@app.command("config")
def show_config(
    recipe: str = RECIPE,
    profile: str = PROFILE,
    mode: str = typer.Option("scratch"),
    sets: Optional[list[str]] = SETS,
    keys: bool = typer.Option(False, "--keys", help="list every settable key instead"),
) -> None:
    """Print the resolved configuration (YAML), or every key that --set and sweep specs accept."""
    import yaml

    from tort_core.config import build_config, known_keys

    if keys:
        out.print("\n".join(known_keys()))
        return
    cfg = build_config(recipe, profile, mode, _overrides(sets), where="tort config")
    out.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="sweep spec (YAML), e.g. sweeps/teacher_temp.yaml"),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="replace the spec's profile: " + "; ".join(
        f"{p.name}: {p.summary}" for p in PROFILE_INFO.values())),
    sets: Optional[list[str]] = SETS,
    dry_run: bool = typer.Option(False, "--dry-run", help="print the trials, what varies, their ids and the "
                                                          "estimated cost; run nothing"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted sweep: missing trials only, each "
                                                        "from its last finished epoch"),
    force: bool = typer.Option(False, "--force", help="recompute every trial, even those complete in the store"),
    results: Path = typer.Option(Path("results"), "--results", help="results store directory"),
    address: Optional[str] = typer.Option(None, "--address", help="existing Ray cluster to run on ('auto' or "
                                                                  "HOST:PORT); default: a local Ray instance"),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1, help="trials at once"),
    gpus_per_trial: Optional[float] = typer.Option(None, "--gpus-per-trial", min=0,
                                                   help="GPUs per trial (fractions share a GPU; 0: CPU)"),
    wandb: bool = typer.Option(True, "--wandb/--no-wandb", help="one W&B run per trial (offline without "
                                                                "credentials, under RESULTS/wandb)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="live progress display"),
    max_trials: int = typer.Option(10_000, "--max-trials", min=1, help="refuse a spec that expands to more trials "
                                                                       "than this (a guard against typos)"),
) -> None:
    """Run a sweep spec on Ray Tune; results go to the store (--results DIR/store.sqlite) and W&B."""
    from tort_core.config import parse_sets
    from tort_core.sweep.spec import check_sets, load_spec

    if resume and force:
        raise ConfigError("--resume and --force contradict each other: --resume keeps finished trials, "
                          "--force recomputes them; pass one")
    # A malformed spec or --set fails here, before pandas, torch and Ray are imported.
    spec_obj = load_spec(spec)
    overrides = check_sets(parse_sets(sets))
    if not dry_run:
        _will_be_writable(results, "--results")
    from tort_core.sweep.runner import plan_sweep, run_sweep

    plan = plan_sweep(spec_obj, profile=profile, sets=overrides, results_dir=results, force=force,
                      max_trials=max_trials)
    if dry_run:
        _print_plan(plan, max_concurrent or plan.spec.max_concurrent)
        return
    outcome = run_sweep(plan, resume=resume, force=force, address=address, max_concurrent=max_concurrent,
                        gpus_per_trial=gpus_per_trial, wandb=wandb, progress=progress, console=err)
    _print_outcome(outcome)
    if outcome.interrupted:
        again = _resume_command(spec, profile, sets, results, address, max_concurrent, gpus_per_trial, wandb,
                                max_trials)
        err.print(f"sweep '{outcome.sweep}' interrupted; `{again}` runs the missing trials", markup=False)
        raise typer.Exit(130)
    if outcome.failed:
        raise typer.Exit(1)


def _resume_command(spec: Path, profile: str | None, sets: list[str] | None, results: Path, address: str | None,
                    max_concurrent: int | None, gpus_per_trial: float | None, wandb: bool, max_trials: int) -> str:
    """The command that resumes this sweep: the same spec, profile, overrides and store."""
    import shlex

    args = ["tort", "sweep", str(spec), "--resume", "--results", str(results)]
    args += ["--profile", profile] if profile else []
    for item in sets or []:
        args += ["--set", item]
    args += ["--address", address] if address else []
    args += ["--max-concurrent", str(max_concurrent)] if max_concurrent else []
    args += ["--gpus-per-trial", f"{gpus_per_trial:g}"] if gpus_per_trial is not None else []
    args += [] if wandb else ["--no-wandb"]
    args += ["--max-trials", str(max_trials)] if max_trials != 10_000 else []
    return shlex.join(args)


def _print_plan(plan, concurrency) -> None:
    from rich.markup import escape
    from rich.table import Table

    from tort_core.sweep.display import fmt_seconds

    exp = plan.expansion
    status = {t.id: "done" for t in plan.skipped}
    status.update({t.id: "resume" if t.id in plan.partial else "new" for t in plan.to_run})
    out.print(f"sweep {plan.spec.name} ({plan.spec.source}), profile {exp.profile}: {len(plan.trials)} trials, "
              f"{len(plan.to_run)} to run, {len(plan.skipped)} already complete"
              + (f", {exp.duplicates} duplicate grid point(s) merged" if exp.duplicates else ""))
    if plan.spec.description:
        out.print(plan.spec.description.strip())
    if exp.collapsed:
        out.print(f"--set replaces the axes: {', '.join(exp.collapsed)}")
    varying = exp.varying or ["seed", "data.dataset"]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ["#", "id", *varying, "status", "est. time"]:
        table.add_column(col, no_wrap=col in ("#", "id", "status", "est. time"), overflow="fold")
    for t in plan.trials:
        flat = t.config.flat()
        est = plan.cost.per_trial.get(t.id)
        table.add_row(str(t.index), t.id, *[escape(str(flat.get(k))) for k in varying], status[t.id],
                      fmt_seconds(est) if est is not None and status[t.id] != "done" else "-")
    _table_console().print(table)
    out.print(f"values that differ per trial: {', '.join(exp.varying) or '(none)'}")
    out.print(f"estimated cost of the {len(plan.to_run)} trial(s) to run: {plan.cost.describe(concurrency)}")


def _print_outcome(outcome) -> None:
    from rich.markup import escape
    from rich.table import Table

    from tort_core.sweep.display import fmt_seconds

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("id", "trial", "status", "epochs", "top1", "knn", "time", "error"):
        # numbers and ids never wrap mid-value; the label and the error fold to what is left
        table.add_column(col, overflow="fold", no_wrap=col not in ("trial", "error"))
    style = {"completed": "green", "failed": "bold red", "stopped": "yellow", "skipped": "dim", "not run": "dim"}
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for t in outcome.trials:
        table.add_row(t.id, escape(t.label), f"[{style.get(t.status, '')}]{t.status}[/]", f"{t.epochs_done}/{t.total_epochs}",
                      fmt(t.final_test_top1), fmt(t.final_knn_top1), fmt_seconds(t.wall_seconds),
                      escape((t.error or "")[:120]))
    _table_console().print(table)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts().items()))
    out.print(f"sweep {outcome.sweep}: {counts} in {fmt_seconds(outcome.wall_seconds)} → {outcome.results_dir}")


@app.command()
def datasets() -> None:
    """List the datasets: tort's own and installed plug-ins, with classes and split sizes."""
    from tort_core.registry import DATASETS

    for name in DATASETS.names():
        try:
            info = DATASETS.info(name)
        except TortError as e:  # a plug-in that fails to load: listed with why, the others still are
            out.print(f"{name}: {e}", markup=False)
            continue
        classes = f"{info.classes} classes" if info.classes else "classes from the folders"
        sizes = ", ".join(f"{split} {n:,}" for split, n in info.splits.items())
        out.print(f"{name}: {info.label}; {classes}" + (f"; {sizes}" if sizes else "") + f"; {info.source}",
                  markup=False)


@app.command()
def recipes() -> None:
    """List the recipes and losses: tort's own and installed plug-ins."""
    from tort_core.registry import LOSSES, RECIPES

    for registry, heading in ((RECIPES, "recipes"), (LOSSES, "losses")):
        out.print(f"{heading}:", markup=False)
        for name in registry.names():
            try:
                summary = registry.info(name).summary
            except TortError as e:  # a plug-in that fails to load: listed with why, the others still are
                summary = str(e)
            out.print(f"  {name}: {summary}", markup=False)


@app.command("compare")
def compare_cmd(
    baseline: str = typer.Option("sota", "--baseline", help="the recipe to beat"),
    method: str = typer.Option("tort", "--method", help="the recipe under test"),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="comma-separated dataset names (default: the "
                                                                     "profile's dataset)"),
    seeds: str = typer.Option("3", "--seeds", help="a count (3 → seeds 0,1,2) or a list (0,1,4)"),
    profile: str = PROFILE,
    mode: str = typer.Option("scratch", "--mode", help="scratch, or finetune (needs --init)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="epochs for both recipes (default: the profile's)"),
    init: Optional[Path] = typer.Option(None, "--init", help="local checkpoint to fine-tune from (--mode finetune)"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="local dataset root (nothing is downloaded)"),
    sets: Optional[list[str]] = SETS,
    baseline_sets: Optional[list[str]] = typer.Option(None, "--baseline-set", help="override a config key for the "
                                                      "baseline's runs only: --baseline-set fidelity=as_run (repeatable)"),
    results: Path = typer.Option(Path("results"), "--results", help="results store directory"),
    out_dir: Path = typer.Option(Path("reports"), "--out", help="where the table (CSV, Markdown) and curves go, in a "
                                                                "folder named by the setting, datasets and seeds"),
    run: bool = typer.Option(True, "--run/--no-run", help="train the missing trials first (--no-run: analyse "
                                                          "what the store holds)"),
    plan: bool = typer.Option(False, "--plan", help="print the smallest Δ these seeds can detect (80% power) and "
                                                    "exit; runs nothing"),
    plan_effect: Optional[float] = typer.Option(None, "--plan-effect", help="with --plan: the Δ (top-1 points) to "
                                                                            "detect; prints the seeds it needs"),
    plan_sd: Optional[float] = typer.Option(None, "--plan-sd", help="with --plan: the seed-to-seed SD (top-1 "
                                                                    "points) to assume (default: from the store)"),
    failed_as_chance: bool = typer.Option(False, "--failed-as-chance", help="score failed runs at chance accuracy "
                                                                            "instead of leaving them out"),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1, help="trials at once"),
    wandb: bool = typer.Option(False, "--wandb/--no-wandb", help="log the trials it runs to W&B"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="live sweep progress"),
) -> None:
    """Method vs baseline per dataset and across datasets: runs the missing trials, then tests."""
    from tort_core.config import parse_sets
    from tort_core.sweep.comparison import output_folder, parse_seeds

    names = [d.strip() for d in datasets.split(",") if d.strip()] if datasets else None
    baseline_only = parse_sets(baseline_sets)
    root = str(data_root.expanduser().resolve()) if data_root is not None else None
    init_path = str(init.expanduser().resolve()) if init is not None else None
    overrides = _overrides(sets, **{"data.root": root, "epochs": epochs, "model.init": init_path})
    epochs, init = overrides.pop("epochs", None), overrides.pop("model.init", None)
    seed_spec = parse_seeds(seeds)
    for flag, value in (("--plan-effect", plan_effect), ("--plan-sd", plan_sd)):
        if value is not None and not (value > 0 and value != float("inf")):
            raise ConfigError(f"{flag} {value}: give a positive number of top-1 points")
    if plan or plan_effect is not None or plan_sd is not None:
        _plan_comparison(baseline, method, names, seed_spec, profile, mode, epochs, init, overrides, results,
                         plan_effect, plan_sd, baseline_only)
        return
    from analysis.compare import compare, display_tables, settings_text, write_comparison
    from analysis.load import dataset_label, load_store
    from analysis.plots import save
    from analysis.report import comparison_figures
    from tort_core.sweep.comparison import run_comparison

    _will_be_writable(out_dir, "--out")  # before any training, not after it (nothing is created yet)
    if run:
        _will_be_writable(results, "--results")
    res = run_comparison(baseline, method, names, seed_spec, profile, mode, epochs, init, overrides, results,
                         run=run, wandb=wandb, max_concurrent=max_concurrent, progress=progress, console=err,
                         baseline_sets=baseline_only)
    err.print(f"comparison sweep {res.sweep}: {res.planned} trials, {res.reused} reused from the store, "
              f"{res.ran} run now")
    store = load_store(results)
    labels = list(dict.fromkeys(dataset_label(t.config.data.dataset, str(t.config.data.root) if t.config.data.root
                                              else None) for t in res.trials))
    cmp = compare(store, baseline, method, datasets=labels, mode=mode, trial_ids=res.trial_ids,
                  failed_as_chance=failed_as_chance)
    done = set(store.completed()["trial_id"].astype(str)) if not store.empty else set()
    missing = [t.label for t in res.trials if t.id not in done]
    if missing:
        cmp.notes.append(f"{len(missing)} of {res.planned} planned trials not completed: " + "; ".join(missing[:8])
                         + (" …" if len(missing) > 8 else ""))
    out.print(f"settings: {settings_text(cmp)}", markup=False)
    out.print("primary test: Welch t on the final test top-1 per dataset (Holm over datasets); the rest is "
              "secondary; intervals are 95%")
    _print_tables(display_tables(cmp))
    for note in cmp.notes:
        out.print(f"note: {note}", markup=False)
    folder = out_dir / output_folder(res.sweep, labels, sorted({t.seed for t in res.trials}))
    written = write_comparison(cmp, folder)
    if not cmp.empty:
        for stem, _, fig in comparison_figures(store, cmp):
            written += save(fig, folder, stem)
    out.print(f"tables and figures → {folder}")
    if res.outcome is not None and res.outcome.failed:
        raise typer.Exit(1)


def _will_be_writable(path: Path, flag: str) -> None:
    """The directory exists and is writable, or its nearest existing parent is: checked without
    creating anything (a rejected command leaves no folder behind)."""
    import os

    p = path.expanduser().resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not (p.is_dir() and os.access(p, os.W_OK | os.X_OK)):
        raise ConfigError(f"{flag} {path}: cannot write there ({p} is not a writable directory); pass a directory "
                          f"you can write to")


def _plan_comparison(baseline, method, names, seed_spec, profile, mode, epochs, init, overrides, results,
                     effect, sd, baseline_sets=None) -> None:
    """`tort compare --plan`: power from an SD (given or observed in the store); runs nothing."""
    from rich.table import Table

    from analysis.errors import AnalysisError, ResultsNotFound
    from analysis.load import dataset_label, load_store
    from analysis.power import observed_sd, plan
    from tort_core.sweep.comparison import expand_comparison

    spec, exp = expand_comparison(baseline, method, names, seed_spec, profile, mode, epochs, init, overrides,
                                  baseline_sets)
    labels = list(dict.fromkeys(dataset_label(t.config.data.dataset, str(t.config.data.root) if t.config.data.root
                                              else None) for t in exp.trials))
    n = len({t.seed for t in exp.trials})
    if sd is not None:
        sds = {ds: (sd, "--plan-sd") for ds in labels}
    else:
        try:
            store = load_store(results)
        except ResultsNotFound:
            store = None
        sds = observed_sd(store, baseline, method, labels, mode, profile, sweep=spec.name)
    lacking = [ds for ds in labels if ds not in sds]
    if lacking:
        raise AnalysisError(f"--plan: no seed-to-seed SD of final test top-1 for {', '.join(lacking)} in "
                            f"'{results}'; give --plan-sd POINTS (e.g. from a pilot run with --seeds 3)")
    df = plan(sds, n, effect)
    table = Table(title=f"{method} vs {baseline} ({profile}, {mode}): two-sided Welch t, α = 0.05, 80% power",
                  title_justify="left", header_style="bold", pad_edge=False)
    cols = ["dataset", "SD (points)", "SD from", f"smallest Δ detectable with {n} seeds/arm"]
    if effect is not None:
        cols.append(f"seeds/arm to detect Δ = {effect:g}")
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in df.to_dict("records"):
        cells = [r["dataset"], f"{r['sd']:.2f}", r["sd_source"], f"{r['mde']:.2f}" if r["mde"] == r["mde"] else "n/a"]
        if effect is not None:
            cells.append(str(r["seeds_needed"]))
        table.add_row(*cells)
    _table_console().print(table)
    out.print("nothing was run (--plan)")


@app.command()
def report(
    results: Path = typer.Option(Path("results"), "--results", help="results store directory, or a folder of its "
                                                                     "tables exported by `tort export`"),
    out_dir: Path = typer.Option(Path("reports"), "--out", help="report directory (index.html, figures/, tables/)"),
    baseline: list[str] = typer.Option(["sota"], "--baseline", help="the recipe to beat; repeat for several (one "
                                                                    "comparison section each)"),
    method: str = typer.Option("tort", "--method"),
    margins: Optional[list[str]] = typer.Option(None, "--margin", help="equivalence margin (top-1 points) of the "
                                                "thesis's 'no effect' claims: 0.5 for all, or KEY=0.5 for one "
                                                "(repeatable; default 1)"),
    failed_as_chance: bool = typer.Option(False, "--failed-as-chance", help="score failed runs at chance accuracy "
                                                                            "instead of leaving them out"),
) -> None:
    """Regenerate the HTML report, figures (PNG, SVG) and tables (CSV) from the results store."""
    from analysis.claims import parse_margins
    from analysis.load import load_store
    from analysis.report import build_report

    margin_by_key = parse_margins(margins)  # a bad margin fails before the store is read
    res = build_report(load_store(results), out_dir, baseline=baseline, method=method, margins=margin_by_key,
                       failed_as_chance=failed_as_chance)
    out.print(f"report → {res.html}  ({len(res.figures)} figure files, {len(res.tables)} tables)")
    if res.missing:
        out.print(f"{len(res.missing)} thing(s) missing or incomplete, listed at the top of the report")


@app.command("export")
def export_cmd(
    results: Path = typer.Option(Path("results"), "--results", help="results store directory"),
    out_dir: Path = typer.Option(..., "--out", help="folder for epochs.parquet, trials.parquet, members.parquet"),
    portable: bool = typer.Option(False, "--portable", help="cut the machine's paths (data roots, checkpoints, "
                                                            "error files) to their last component, for publishing"),
) -> None:
    """Write the store's tables as Parquet (one snapshot; no checkpoints or run folders). `tort report
    --results OUT` reads such a folder."""
    from tort_core.store import DB_FILE, export_parquet

    if not (results / DB_FILE).is_file():
        raise ConfigError(f"--results {results}: no results store there ({DB_FILE}); pass the folder `tort sweep` or "
                          f"`tort compare` wrote to")
    if out_dir.expanduser().resolve() == results.expanduser().resolve():
        raise ConfigError(f"--out {out_dir}: the same folder as --results; pass another folder")
    _will_be_writable(out_dir, "--out")
    paths = export_parquet(results, out_dir, portable=portable)
    size = sum(p.stat().st_size for p in paths.values())
    out.print(f"exported {', '.join(p.name for p in paths.values())} ({size / 1024:.0f} KiB) → {out_dir}",
              markup=False)


def _print_tables(tables) -> None:
    from rich.markup import escape
    from rich.table import Table

    for t in tables:
        title, df = t.title, t.df
        table = Table(title=escape(title), title_justify="left", header_style="bold", pad_edge=False)
        for col in df.columns:
            table.add_column(escape(str(col)), overflow="fold")
        for row in df.itertuples(index=False):
            table.add_row(*[escape(str(v)) for v in row])
        console = _table_console()
        console.print(table)
        for note in t.notes:
            console.print(escape(note))


def _click_errors() -> tuple[type[BaseException], ...]:
    """Click's usage-error base classes: click's own, and the copy that typer ≥ 0.2x vendors (whose
    exceptions are not click's, so catching click's alone lets them out as tracebacks)."""
    found: list[type[BaseException]] = [click.ClickException]
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        return tuple(found)
    found.append(vendored.ClickException)
    return tuple(found)


_USAGE_ERRORS = _click_errors()
_EXITS = (typer.Exit, click.exceptions.Exit)
_ABORTS = (typer.Abort, click.exceptions.Abort)


def _usage_line(e: BaseException) -> str:
    """A click usage error as one line: what was wrong, and where to look."""
    message = " ".join(e.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    ctx = getattr(e, "ctx", None)
    where = f"{ctx.command_path} --help" if ctx is not None else "tort --help"
    return f"error: {message}; see `{where}`"


def one_line(e: BaseException) -> str:
    """The message of a tort error as one line. An error raised in a DataLoader worker comes back
    wrapped ("Caught DataError in DataLoader worker process 0. Original Traceback ..."): its own
    message is the last line of that traceback, after the exception's name."""
    text = str(e)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        name, sep, message = last.partition(": ")
        text = message if sep and name.rsplit(".", 1)[-1] == type(e).__name__ else last
    return " ".join(text.split())


def _table_console() -> Console:
    """Where tables go: the terminal at its width; piped output (a log, a file) has no width to fit,
    so rows stay on one line rather than wrapping at 80 columns."""
    return out if out.is_terminal else Console(file=sys.stdout, width=240, highlight=False, soft_wrap=False)


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except TortError as e:
        err.print(f"error: {one_line(e)}", markup=False)
        sys.exit(2)
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise
        # A full disk, a quota or a read-only file system: nothing half-written is left behind
        # (every file is written aside and renamed), so the same command resumes afterwards.
        where = f" ({e.filename})" if e.filename else ""
        err.print(f"error: {e.strerror}{where}; free space (or fix the mount) and run the command again (a sweep "
                  f"with --resume): runs continue from their last finished checkpoint", markup=False)
        sys.exit(2)
    except _EXITS as e:
        sys.exit(getattr(e, "exit_code", 0))
    except _ABORTS:
        err.print("aborted")
        sys.exit(130)
    except _USAGE_ERRORS as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `tort` or `tort sweep`: the help, as asked
            out.print(e.ctx.get_help(), markup=False, highlight=False)  # type: ignore[attr-defined]
            sys.exit(2)
        err.print(_usage_line(e), markup=False)
        sys.exit(getattr(e, "exit_code", 2) or 2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
