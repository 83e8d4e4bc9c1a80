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

from tort_core.errors import TortError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="tort: train ViTs on small data with Tort, sweep, compare, report.")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

RECIPE = typer.Option("tort", "--recipe", "-r", help="training recipe: tort or sota")
PROFILE = typer.Option("thesis", "--profile", "-p", help="thesis (ViT-B/16, 224/96) or demo (tiny ViT, digits)")
SETS = typer.Option(None, "--set", "-s", help="override any config key: --set loss.teacher_temp=0.06 (repeatable)")


def _overrides(sets: Optional[list[str]], **named) -> dict:
    from tort_core.config import parse_sets

    overrides = {k: v for k, v in named.items() if v is not None}
    overrides.update(parse_sets(sets))
    return overrides


@app.command()
def train(
    recipe: str = RECIPE,
    profile: str = PROFILE,
    mode: str = typer.Option("scratch", help="scratch, or finetune (needs --init)"),
    dataset: Optional[str] = typer.Option(None, help="digits (embedded), flowers102, fgvc_aircraft, stanford_cars, "
                                                     "oxford_pet, imagefolder"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="local dataset root (nothing is downloaded)"),
    model: Optional[str] = typer.Option(None, help="any timm model name"),
    epochs: Optional[int] = typer.Option(None, help="warm-up + cosine epochs (cool-down comes on top)"),
    seed: Optional[int] = typer.Option(None),
    init: Optional[Path] = typer.Option(None, "--init", help="local checkpoint to start from (fine-tuning)"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N"),
    sets: Optional[list[str]] = SETS,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<recipe>-<profile>-<id>)"),
    resume: bool = typer.Option(True, help="continue from the run directory's checkpoint if there is one"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train one run; write metrics.parquet, summary.json and checkpoint.pt to the run directory."""
    import yaml

    from tort_core.config import build_config
    from tort_core.data import load_dataset
    from tort_core.progress import RichProgress
    from tort_core.results import ParquetRecorder, SummaryWriter
    from tort_core.trainer import fit

    if init is not None:
        init = init.expanduser().resolve()
    named = {"data.dataset": dataset, "data.root": str(data_root.expanduser().resolve()) if data_root else None,
             "model.name": model, "epochs": epochs, "seed": seed, "model.init": str(init) if init else None,
             "device": device}
    cfg = build_config(recipe, profile, mode, _overrides(sets, **named), where="tort train")
    data = load_dataset(cfg.data.dataset, cfg.data.root)  # a bad root fails here, before anything is written
    run_dir = (out_dir or Path("runs") / f"{cfg.recipe}-{cfg.profile}-{cfg.data.dataset}-s{cfg.seed}-{cfg.content_hash()}")
    run_dir = run_dir.expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    meta = {"config_id": cfg.content_hash(), "recipe": cfg.recipe, "profile": cfg.profile,
            "dataset": cfg.data.dataset, "seed": cfg.seed, "model": cfg.model.name}
    callbacks = [ParquetRecorder(run_dir / "metrics.parquet", meta), SummaryWriter(run_dir / "summary.json", meta)]
    if progress:
        callbacks.append(RichProgress(err))
    err.print(f"run {meta['config_id']}: {cfg.recipe} / {cfg.profile} / {cfg.data.dataset} / {cfg.model.name} "
              f"→ {run_dir}")
    result = fit(cfg, run_dir, callbacks=callbacks, resume=resume, data=data)
    if result.status != "completed":
        err.print(f"run failed: {result.error}")
        raise typer.Exit(1)
    final = result.final
    out.print(f"completed {len(result.records)} epochs: top1 {final.get('test_top1', float('nan')):.2f}%  "
              f"knn {final.get('knn_top1', float('nan')):.2f}%  → {run_dir / 'metrics.parquet'}")


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
def datasets() -> None:
    """List the registered datasets."""
    from tort_core.data import DATASETS

    out.print("\n".join(DATASETS.names()))


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except TortError as e:
        err.print(f"error: {e}")
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
