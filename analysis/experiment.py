"""Run the method-vs-baseline experiment through the sweep machinery, then compare.

    res = run_comparison(baseline="sota", method="tort", datasets=["digits"], seeds=3, profile="demo")
    res.comparison.table

The comparison is an ordinary sweep (`recipe` is its one axis) named after its setting, so its
trials land in the same store as every other sweep, a trial computed before under any sweep is
reused (trial ids are config hashes), and an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compare import Comparison, compare
from .errors import AnalysisError
from .load import dataset_label, load_store


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
        raise AnalysisError(f"--seeds '{text}': give a count (3) or a comma-separated list (0,1,2)") from None
    if not values:
        raise AnalysisError("--seeds: empty; give a count (3) or a list (0,1,2)")
    return values[0] if len(parts) == 1 and "," not in text else values


def comparison_name(baseline: str, method: str, profile: str, mode: str, settings: dict[str, Any]) -> str:
    """compare-<method>-vs-<baseline>-<profile>-<mode>[-<hash of overrides>]: one sweep per setting,
    so two comparisons under different overrides never share a name (or a report block)."""
    name = f"compare-{method}-vs-{baseline}-{profile}-{mode}"
    if settings:
        blob = json.dumps(settings, sort_keys=True, default=str)
        name += "-" + hashlib.sha256(blob.encode()).hexdigest()[:8]
    return name


def comparison_spec(baseline: str, method: str, datasets: Sequence[str] | None, seeds: int | list[int],
                    profile: str, mode: str, overrides: dict[str, Any], sets: dict[str, Any]):
    from tort_core.recipes import RECIPES
    from tort_core.sweep import spec_from_dict

    for name in (baseline, method):
        RECIPES.get(name)  # unknown recipe: ConfigError naming the choices, before anything else
    if baseline == method:
        raise AnalysisError(f"--baseline and --method are the same recipe '{method}'")
    for key in ("recipe", "mode", "seed", "data.dataset"):
        if key in sets:
            raise AnalysisError(f"--set {key}: use --baseline/--method, --mode, --seeds or --datasets instead")
    name = comparison_name(baseline, method, profile, mode, {**overrides, **sets})
    data: dict[str, Any] = {"name": name, "description": f"{method} vs {baseline} ({profile}, {mode})",
                            "recipe": method, "profile": profile, "mode": mode, "overrides": overrides,
                            "axes": {"recipe": [baseline, method]}, "seeds": seeds}
    if datasets:
        data["datasets"] = list(datasets)
    return spec_from_dict(data, source=f"tort compare ({name})")


@dataclass
class ComparisonRun:
    comparison: Comparison
    sweep: str
    planned: int
    ran: int
    reused: int
    outcome: Any = None
    missing: list[str] = field(default_factory=list)


def run_comparison(baseline: str = "sota", method: str = "tort", datasets: Sequence[str] | None = None,
                   seeds: int | list[int] = 3, profile: str = "thesis", mode: str = "scratch",
                   epochs: int | None = None, init: str | Path | None = None, sets: dict[str, Any] | None = None,
                   results_dir: str | Path = "results", run: bool = True, wandb: bool = False,
                   max_concurrent: int | None = None, progress: bool = True, console=None) -> ComparisonRun:
    """Plan the comparison sweep, run the trials the store lacks (unless run=False), and compare
    exactly the planned trials."""
    from tort_core.sweep import plan_sweep, run_sweep

    sets = dict(sets or {})
    overrides: dict[str, Any] = {}
    if epochs is not None:
        overrides["epochs"] = epochs
    if init is not None:
        overrides["model.init"] = str(Path(init).expanduser().resolve())
    spec = comparison_spec(baseline, method, datasets, seeds, profile, mode, overrides, sets)
    plan = plan_sweep(spec, profile=profile, sets=sets, results_dir=results_dir)
    outcome = None
    if run and plan.to_run:
        outcome = run_sweep(plan, resume=True, wandb=wandb, max_concurrent=max_concurrent, progress=progress,
                            console=console)
    elif not run and not Path(results_dir).expanduser().exists():
        from .errors import ResultsNotFound

        raise ResultsNotFound(f"results directory '{results_dir}' does not exist (and --no-run runs nothing)")
    store = load_store(results_dir)
    ids = [t.id for t in plan.trials]
    labels = list(dict.fromkeys(dataset_label(t.config.data.dataset, str(t.config.data.root) if t.config.data.root
                                              else None) for t in plan.trials))
    cmp = compare(store, baseline, method, datasets=labels, mode=mode, trial_ids=ids)
    done = set(store.completed()["trial_id"].astype(str)) if not store.empty else set()
    missing = [t.label for t in plan.trials if t.id not in done]
    if missing:
        cmp.notes.append(f"{len(missing)} of {len(ids)} planned trials not completed: " + "; ".join(missing[:8])
                         + (" …" if len(missing) > 8 else ""))
    return ComparisonRun(cmp, spec.name, len(ids), len(plan.to_run) if run else 0, len(plan.skipped), outcome,
                         missing)
