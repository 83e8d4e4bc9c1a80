"""Runs that did not produce a usable number: failures per arm and collapsed teachers.

A failed run is not silently dropped: every table counts, per arm, the runs started, completed
and failed, and `score_failed_as_chance` can put a failed run back in at chance accuracy (the
score it earned) instead of leaving only the survivors.

A collapsed teacher: DINO-style self-distillation can collapse to a teacher that outputs the
uniform distribution over its `heads.out_dim` prototypes, whatever the image. Its per-sample
entropy (`teacher_entropy`, nats, recorded per epoch) then sits at its maximum, log(out_dim). A
run is flagged collapsed when its last epoch's teacher entropy is within COLLAPSE_TOLERANCE
(relative) of log(out_dim): e.g. ≥ 10.87 nats for out_dim 65,536 (log = 11.09), ≥ 5.43 for 256.
A short run flags too, since its teacher has not yet left the uniform start: the flag says the
teacher carries no information at the end, whatever the reason.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .load import COMPLETED

FAILED = "failed"
COLLAPSE_TOLERANCE = 0.02
ENTROPY = "teacher_entropy"
OUT_DIM = "heads.out_dim"


def teacher_collapse(trials: pd.DataFrame, epochs: pd.DataFrame, tol: float = COLLAPSE_TOLERANCE) -> pd.DataFrame:
    """Per trial with a recorded teacher entropy: trial_id, teacher_entropy (last epoch),
    max_entropy (log out_dim), collapsed (bool)."""
    cols = ["trial_id", "teacher_entropy", "max_entropy", "collapsed"]
    if epochs.empty or ENTROPY not in epochs or trials.empty or OUT_DIM not in trials:
        return pd.DataFrame(columns=cols)
    e = epochs.loc[epochs["trial_id"].isin(set(trials["trial_id"])), ["trial_id", "epoch", ENTROPY]]
    e = e.sort_values(["trial_id", "epoch"], kind="stable").drop_duplicates("trial_id", keep="last")
    e = e.dropna(subset=[ENTROPY])
    if e.empty:
        return pd.DataFrame(columns=cols)
    k = pd.to_numeric(trials.set_index("trial_id")[OUT_DIM], errors="coerce")
    k = k[~k.index.duplicated(keep="last")]
    out = e[["trial_id", ENTROPY]].copy()
    out["max_entropy"] = np.log(out["trial_id"].map(k).astype(float))
    out["collapsed"] = out[ENTROPY] >= (1 - tol) * out["max_entropy"]
    return out[cols].reset_index(drop=True)


def run_counts(trials: pd.DataFrame, collapsed: pd.DataFrame | None = None) -> dict[str, float]:
    """started (every trial with a row), completed, failed, running (or stopped), failure rate
    (failed ÷ finished), teacher collapsed (of the completed runs with a recorded entropy)."""
    status = trials["status"] if "status" in trials else pd.Series(dtype=str)
    done, failed = int((status == COMPLETED).sum()), int((status == FAILED).sum())
    finished = done + failed
    out = {"started": int(len(trials)), "completed": done, "failed": failed,
           "running": int(len(trials) - finished),
           "failure_rate": failed / finished if finished else math.nan,
           "collapsed": math.nan, "entropy_recorded": 0}
    if collapsed is not None and not collapsed.empty:
        ids = set(trials.loc[status == COMPLETED, "trial_id"])
        c = collapsed[collapsed["trial_id"].isin(ids)]
        if len(c):  # no teacher (a supervised baseline): n/a, not "0 of 0"
            out["collapsed"], out["entropy_recorded"] = int(c["collapsed"].sum()), int(len(c))
    return out


def score_failed_as_chance(trials: pd.DataFrame, metrics, chance: float) -> tuple[pd.DataFrame, int]:
    """The completed trials plus the failed ones with `metrics` (accuracies) set to chance: the
    score a run that learnt nothing has. Returns (trials, how many failed runs were put back)."""
    done = trials[trials["status"] == COMPLETED]
    failed = trials[trials["status"] == FAILED]
    if failed.empty or not math.isfinite(chance):
        return done, 0
    failed = failed.copy()
    for m in metrics:
        failed[m] = chance
    return pd.concat([done, failed]), int(len(failed))
