"""Sweeps: YAML specs → validated, expanded trials → Ray Tune → the results store (store.py).

Public API (used by `tort sweep` and by the analysis):

    load_spec(path) -> SweepSpec                      validate a spec file (ConfigError on bad input)
    expand(spec, profile=None, sets=None) -> Expansion   .trials: list[Trial] (id, config, axes, seed, dataset)
    plan_sweep(spec_or_path, profile, sets, results_dir, force) -> SweepPlan   to_run / skipped / cost
    run_sweep(plan_or_spec_or_path, ...) -> SweepOutcome
    tort_core.results.load_epochs(results_dir, sweep=None), load_trials(results_dir, sweep=None)
"""

from .expand import Expansion, Trial, expand, grid_points
from .spec import SweepSpec, load_spec, spec_from_dict

__all__ = ["Expansion", "SweepOutcome", "SweepPlan", "SweepSpec", "Trial", "TrialOutcome", "expand",
           "grid_points", "load_spec", "plan_sweep", "run_sweep", "spec_from_dict"]


_LAZY = {"plan_sweep": "plan", "SweepPlan": "plan", "estimate_cost": "plan", "CostEstimate": "plan",
         "run_sweep": "runner", "SweepOutcome": "outcome", "TrialOutcome": "outcome"}


def __getattr__(name: str):
    # Planning and running import the store (pandas) and Ray lazily; keep `import tort_core.sweep`
    # light for spec checks.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
