"""The method-vs-baseline experiment as a sweep: plan it, run the trials the store lacks.

    run = run_comparison(baseline="sota", method="tort", datasets=["digits"], seeds=3, profile="demo")
    run.trial_ids            # exactly the planned trials; `analysis.compare.compare` tests them

The comparison is an ordinary sweep (`recipe` is its one axis) named after its setting, so its
trials land in the same store as every other sweep, a trial computed before under any sweep is
reused (trial ids are config hashes), and an interrupted comparison resumes where it stopped.
The statistics live in `analysis/` (which never starts Ray); this module only plans and runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def parse_seeds(text: str | int | Sequence[int]) -> int | list[int]:
    """'3' → 3 seeds (0, 1, 2); '0,1,4' → those seeds."""
    if isinstance(text, int):
        return text
    if not isinstance(text, str):
        return [int(s) for s in text]
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--seeds '{text}': give a count (3) or a comma-separated list (0,1,2)") from None
    if not values:
        raise ConfigError("--seeds: empty; give a count (3) or a list (0,1,2)")
    if len(parts) == 1 and "," not in text:
        if values[0] < 1:
            raise ConfigError(f"--seeds {values[0]}: give at least 1 seed")
        return values[0]
    return values


def comparison_name(baseline: str, method: str, profile: str, mode: str, settings: dict[str, Any]) -> str:
    """compare-<method>-vs-<baseline>-<profile>-<mode>[-<hash of overrides>]: one sweep per setting,
    so two comparisons under different overrides never share a name (or a report block). Seeds
    and datasets are not part of it, an ImageFolder root (`data.root`) included: more seeds, or
    another dataset, of the same setting add to the same comparison, which the report then tests
    across its datasets (Holm, IQM)."""
    settings = {k: v for k, v in settings.items() if k != "data.root"}
    name = f"compare-{method}-vs-{baseline}-{profile}-{mode}"
    if settings:
        blob = json.dumps(settings, sort_keys=True, default=str)
        name += "-" + hashlib.sha256(blob.encode()).hexdigest()[:8]
    return name


def _seeds_label(seeds: Sequence[int]) -> str:
    s = sorted(set(int(x) for x in seeds))
    if not s:
        return "none"
    if s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"{s[0]}-{s[-1]}"
    if len(s) <= 6:
        return "_".join(map(str, s))
    return "h" + hashlib.sha256(",".join(map(str, s)).encode()).hexdigest()[:8]


def output_folder(sweep: str, datasets: Sequence[str], seeds: Sequence[int]) -> str:
    """The folder name for one comparison's tables and figures: the sweep (setting) plus the
    datasets and seeds it compared, so a later run with other seeds or datasets writes beside an
    earlier one instead of over it."""
    ds = "+".join(sorted(re.sub(r"[^A-Za-z0-9_.-]+", "_", d) for d in datasets)) or "all"
    name = f"{sweep}-{ds}-seeds{_seeds_label(seeds)}"
    if len(name) > 150:
        name = f"{sweep}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


def method_values(method: str, profile: str, mode: str, settings: dict[str, Any], keys: Sequence[str]) -> list[Any]:
    """The values `keys` take in the method's resolved config under `settings`: the method's side of
    a zipped per-arm override (its own value, so its trial is the one it would be without it)."""
    from ..config import build_config

    dump = build_config(method, profile, mode, settings, where="tort compare", check_names=False).model_dump(mode="json")
    values = []
    for key in keys:
        node: Any = dump
        for part in key.split("."):
            node = node[part]
        values.append(node)
    return values


def comparison_spec(baseline: str, method: str, datasets: Sequence[str] | None, seeds: int | list[int],
                    profile: str, mode: str, sets: dict[str, Any], baseline_sets: dict[str, Any] | None = None):
    """The comparison as a sweep spec: `recipe` is its axis. `baseline_sets` are overrides for the
    baseline's trials only (`--baseline-set fidelity=as_run`: the baseline as the original code ran
    it, the method as configured); they are zipped with the recipe axis, the method's side taking
    its own resolved value."""
    from ..catalog import RECIPE_INFO
    from ..config import check_key
    from .spec import spec_from_dict

    for name in (baseline, method):
        if name not in RECIPE_INFO:
            from ..recipes import RECIPES  # a plug-in recipe the catalog does not list

            RECIPES.get(name)  # unknown recipe: ConfigError naming the choices, before anything else
    if baseline == method:
        raise ConfigError(f"--baseline and --method are the same recipe '{method}'")
    for key in ("recipe", "mode", "seed", "data.dataset"):
        if key in sets:
            raise ConfigError(f"--set {key}: use --baseline/--method, --mode, --seeds or --datasets instead")
    baseline_sets = dict(baseline_sets or {})
    for key in baseline_sets:
        check_key(key, "--baseline-set")
        if key in ("recipe", "mode", "seed", "data.dataset"):
            raise ConfigError(f"--baseline-set {key}: not a per-arm setting; use --baseline/--method, --mode, --seeds "
                              f"or --datasets")
        if key in sets:
            raise ConfigError(f"--baseline-set {key}: also set for both arms (--set or a named option); pass it "
                              f"one way")
    settings = dict(sets)
    if baseline_sets:
        settings["baseline-set"] = baseline_sets
    name = comparison_name(baseline, method, profile, mode, settings)
    description = f"{method} vs {baseline} ({profile}, {mode})"
    data: dict[str, Any] = {"name": name, "description": description,
                            "recipe": method, "profile": profile, "mode": mode, "seeds": seeds}
    if baseline_sets:
        keys = list(baseline_sets)
        mine = method_values(method, profile, mode, sets, keys)
        data["zip"] = [{"recipe": [baseline, method], **{k: [baseline_sets[k], v] for k, v in zip(keys, mine)}}]
        data["description"] = description + " with " + ", ".join(f"{k}={v}" for k, v in baseline_sets.items()) + \
            f" for {baseline} only"
    else:
        data["axes"] = {"recipe": [baseline, method]}
    if datasets:
        data["datasets"] = list(datasets)
    return spec_from_dict(data, source=f"tort compare ({name})")


def with_named_options(sets: dict[str, Any] | None, epochs: int | None, init: str | Path | None) -> dict[str, Any]:
    """The --set overrides with --epochs and --init among them: they are validated together, since
    `--epochs 1 --set optim.warmup_epochs=0` is only valid as a pair."""
    named: dict[str, Any] = {}
    if epochs is not None:
        named["epochs"] = epochs
    if init is not None:
        named["model.init"] = str(Path(init).expanduser().resolve())
    return {**named, **(sets or {})}


def expand_comparison(baseline: str, method: str, datasets: Sequence[str] | None, seeds: int | list[int],
                      profile: str, mode: str, epochs: int | None = None, init: str | Path | None = None,
                      sets: dict[str, Any] | None = None, baseline_sets: dict[str, Any] | None = None):
    """(spec, expansion): the comparison's trials with their configs; nothing is run or read."""
    from .expand import expand

    sets = with_named_options(sets, epochs, init)
    spec = comparison_spec(baseline, method, datasets, seeds, profile, mode, sets, baseline_sets)
    return spec, expand(spec, profile=profile, sets=sets)


@dataclass
class ComparisonRun:
    sweep: str
    planned: int
    ran: int
    reused: int
    trial_ids: list[str]
    trials: list[Any] = field(default_factory=list)  # tort_core.sweep.Trial, one per planned trial
    outcome: Any = None


def run_comparison(baseline: str = "sota", method: str = "tort", datasets: Sequence[str] | None = None,
                   seeds: int | list[int] = 3, profile: str = "thesis", mode: str = "scratch",
                   epochs: int | None = None, init: str | Path | None = None, sets: dict[str, Any] | None = None,
                   results_dir: str | Path = "results", run: bool = True, wandb: bool = False,
                   max_concurrent: int | None = None, progress: bool = True, console=None,
                   baseline_sets: dict[str, Any] | None = None) -> ComparisonRun:
    """Plan the comparison sweep and run the trials the store lacks (unless run=False)."""
    from . import plan_sweep, run_sweep

    sets = with_named_options(sets, epochs, init)
    spec = comparison_spec(baseline, method, datasets, seeds, profile, mode, sets, baseline_sets)
    plan = plan_sweep(spec, profile=profile, sets=sets, results_dir=results_dir)
    outcome = None
    if run and plan.to_run:
        outcome = run_sweep(plan, resume=True, wandb=wandb, max_concurrent=max_concurrent, progress=progress,
                            console=console)
    elif not run and not Path(results_dir).expanduser().exists():
        raise ConfigError(f"results directory '{results_dir}' does not exist (and --no-run runs nothing)")
    return ComparisonRun(spec.name, len(plan.trials), len(plan.to_run) if run else 0, len(plan.skipped),
                         [t.id for t in plan.trials], list(plan.trials), outcome)
