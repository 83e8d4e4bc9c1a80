"""Planning a sweep: expand the spec, look the trials up in the store, estimate the cost.

No Ray and no torch: `tort sweep --dry-run` runs only this.

    plan = plan_sweep("sweeps/teacher_temp.yaml", profile="demo", results_dir="results")
    plan.to_run, plan.skipped, plan.partial, plan.cost
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import DATASET_INFO
from ..config import RunConfig
from ..errors import ConfigError
from ..store import TRIALS_TABLE, ResultStore
from .expand import MAX_TRIALS, Expansion, Trial, expand
from .layout import CHECKPOINT, run_dir
from .spec import SweepSpec, load_spec

# Training throughput (images/s, evaluation included) assumed when the store has no comparable
# measured trial: rough figures for the two profiles, to be replaced by measurements.
NOMINAL_IMAGES_PER_S = {"demo": 60.0, "thesis": 40.0}


@dataclass
class CostEstimate:
    trial_epochs: int
    train_images: int  # images passed through training, all trials, all epochs
    seconds: float | None  # sum over trials (device-seconds)
    source: str  # "measured (n trials)" | "nominal" | "unknown"
    per_trial: dict[str, float] = field(default_factory=dict)

    def describe(self, concurrency: int | None = None) -> str:
        from .display import fmt_seconds

        if self.trial_epochs == 0:
            return "nothing to run: every trial is complete in the store (--force recomputes)"
        parts = [f"{self.trial_epochs:,} trial-epochs", f"{self.train_images:,} training images"]
        if self.seconds is not None:
            parts.append(f"≈ {fmt_seconds(self.seconds)} of device time ({self.source})")
            if concurrency:
                parts.append(f"≈ {fmt_seconds(self.seconds / concurrency)} wall with {concurrency} concurrent")
        else:
            parts.append("time unknown (no dataset size)")
        return ", ".join(parts)


@dataclass
class SweepPlan:
    """What a sweep would do; `run_sweep` executes it."""

    expansion: Expansion
    results_dir: Path
    to_run: list[Trial]
    skipped: list[Trial]  # already completed in the store
    partial: set[str]  # trial ids with a checkpoint to resume from
    cost: CostEstimate
    force: bool = False

    @property
    def spec(self) -> SweepSpec:
        return self.expansion.spec

    @property
    def trials(self) -> list[Trial]:
        return self.expansion.trials


def done_statuses(spec: SweepSpec) -> set[str]:
    # An early-stopped trial is finished for a sweep that early-stops, not for one that does not.
    return {"completed", "stopped"} if spec.early_stop else {"completed"}


def plan_sweep(spec: SweepSpec | str | Path, profile: str | None = None, sets: dict[str, Any] | None = None,
               results_dir: str | Path = "results", force: bool = False, max_trials: int = MAX_TRIALS) -> SweepPlan:
    """Validate and expand a spec and compare it with the store; raises ConfigError on bad input
    (a spec of more than `max_trials` trials among it)."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    exp = expand(spec, profile=profile, sets=sets, max_trials=max_trials)
    if spec.early_stop is not None:
        longest = max(t.config.total_epochs for t in exp.trials)
        if spec.early_stop.grace_period >= longest:
            raise ConfigError(f"{spec.source}: early_stop.grace_period: {spec.early_stop.grace_period} epochs is not "
                              f"below the trials' {longest} epochs; lower it or remove early_stop")
    results = Path(results_dir).expanduser().resolve()
    store = ResultStore(results)
    statuses = store.statuses()
    done = done_statuses(spec)
    if force:
        to_run, skipped = list(exp.trials), []
    else:
        skipped = [t for t in exp.trials if statuses.get(t.id) in done]
        to_run = [t for t in exp.trials if statuses.get(t.id) not in done]
    partial = {t.id for t in to_run if (run_dir(results, t.id) / CHECKPOINT).exists()} if not force else set()
    return SweepPlan(exp, results, to_run, skipped, partial, estimate_cost(to_run, store), force)


def _trial_size(cfg: RunConfig) -> tuple[int, int] | None:
    info = DATASET_INFO.get(cfg.data.dataset)
    sizes = info.sizes if info is not None else None
    if sizes is None:
        return None
    train, test = sizes
    if cfg.data.train_limit:
        train = min(train, cfg.data.train_limit)
    if cfg.data.test_limit:
        test = min(test, cfg.data.test_limit)
    return train, test


_COMPARABLE = ("recipe", "model.name", "views.global_size", "views.local_size", "views.n_local", "batch_size")


def estimate_cost(trials: list[Trial], store: ResultStore | None = None) -> CostEstimate:
    """Trial-epochs, images, and device-time: measured seconds per training image of comparable
    completed trials in the store (same recipe, model, view sizes, batch), else a nominal rate."""
    measured: dict[tuple, float] = {}
    rows = store.read(TRIALS_TABLE) if store is not None else None
    if rows is not None and not rows.empty and {"wall_seconds", "epochs_done", "train_size"} <= set(rows.columns):
        ok = rows[(rows["status"] == "completed") & (rows["train_size"] > 0) & (rows["epochs_done"] > 0)]
        ok = ok.dropna(subset=[c for c in _COMPARABLE if c in ok.columns])
        if all(c in ok.columns for c in _COMPARABLE) and not ok.empty:
            per_image = ok["wall_seconds"] / (ok["epochs_done"] * ok["train_size"])
            for key, group in per_image.groupby([ok[c].astype(str) for c in _COMPARABLE]):
                measured[tuple(str(k) for k in key)] = (float(group.median()), len(group))
    total, images, epochs, nominal = 0.0, 0, 0, 0
    basis: set[tuple] = set()
    per_trial: dict[str, float] = {}
    unknown = False
    for t in trials:
        cfg = t.config
        n_epochs = cfg.total_epochs
        epochs += n_epochs
        size = _trial_size(cfg)
        if size is None:
            unknown = True
            continue
        images += n_epochs * size[0]
        flat = cfg.flat()
        key = tuple(str(flat[c]) for c in _COMPARABLE)
        if key in measured:
            secs = n_epochs * size[0] * measured[key][0]
            basis.add(key)
        else:
            secs = n_epochs * size[0] / NOMINAL_IMAGES_PER_S.get(cfg.profile, 40.0)
            nominal += 1
        per_trial[t.id] = secs
        total += secs
    if unknown and not per_trial:
        return CostEstimate(epochs, images, None, "unknown", per_trial)
    n_basis = sum(measured[k][1] for k in basis)
    rates = sorted({NOMINAL_IMAGES_PER_S.get(t.config.profile, 40.0) for t in trials})
    rate = "/".join(f"{r:g}" for r in rates) + " img/s"
    source = (f"rate measured on {n_basis} completed comparable trial(s)" if basis and not nominal
              else f"nominal rate ({rate}); no comparable trial measured yet" if not basis
              else f"{nominal} trial(s) at a nominal rate, the rest measured on {n_basis} trial(s)")
    return CostEstimate(epochs, images, total, source, per_trial)
