"""What a sweep did, per trial: read back from the store when the sweep ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..store import TRIALS_TABLE, ResultStore
from .plan import SweepPlan


@dataclass
class TrialOutcome:
    id: str
    label: str
    status: str  # completed | failed | stopped | skipped (done before) | not run (interrupted)
    epochs_done: int = 0
    total_epochs: int = 0
    final_test_top1: float | None = None
    final_knn_top1: float | None = None
    wall_seconds: float | None = None
    error: str | None = None


@dataclass
class SweepOutcome:
    sweep: str
    results_dir: Path
    trials: list[TrialOutcome]
    wall_seconds: float
    interrupted: bool = False
    # Driver phases (seconds): ray_init (0 when a session was already up), setup (store, W&B,
    # Tuner), tune (Tuner.fit: every trial), shutdown (Ray, when this call started it).
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out


def _number(row: dict, key: str) -> float | None:
    v = row.get(key)
    return None if v is None or v != v else float(v)


def collect_outcome(plan: SweepPlan, store: ResultStore, wall: float, interrupted: bool) -> SweepOutcome:
    trials = store.read(TRIALS_TABLE)
    by_id = {r["trial_id"]: r for r in trials.to_dict("records")} if not trials.empty else {}
    skipped = {t.id for t in plan.skipped}
    out = []
    for t in plan.trials:
        r = by_id.get(t.id)
        if r is None or r.get("status") == "running":
            out.append(TrialOutcome(t.id, t.label, "not run", total_epochs=t.config.total_epochs))
            continue
        status = "skipped" if t.id in skipped else str(r.get("status"))
        err = r.get("error")
        out.append(TrialOutcome(t.id, t.label, status, int(_number(r, "epochs_done") or 0), t.config.total_epochs,
                                _number(r, "final_test_top1"), _number(r, "final_knn_top1"),
                                _number(r, "wall_seconds"), err if isinstance(err, str) and err else None))
    return SweepOutcome(plan.spec.name, plan.results_dir, out, wall, interrupted)
