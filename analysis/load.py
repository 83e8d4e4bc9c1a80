"""Load the Parquet results store into two tidy tables and describe what is in it.

    store = load_store("results")        # or Store.from_frames(epochs_df, trials_df)
    store.epochs                         # one row per (trial, epoch)
    store.trials                         # one row per trial: status, config, final_/best_ metrics

Column names are normalised here once (`sweep`, `trial_id`, `seed`, `recipe`, `mode`, `dataset`,
`status`), so the rest of the analysis does not care how the store spells them. `dataset` is a
label: the registered name, or `imagefolder:<folder>` for ImageFolder trees, so two different
ImageFolder datasets never pool. Config keys keep their dotted names (`loss.teacher_temp`).

Final and best metrics are recomputed from the per-epoch rows whenever those exist, so a trial's
numbers mean the same thing whoever wrote its summary row. A trial that has epochs but no summary
row is still running (or was killed): its status is `running` and it is never treated as final.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tort_core.config import runtime_keys
from tort_core.config import varying_keys as _varying

from .errors import AnalysisError, ResultsNotFound

# canonical name → spellings a store may use (first match wins)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "sweep": ("sweep", "sweep_name"),
    "trial_id": ("trial_id", "trial", "config_id", "id"),
    "seed": ("seed",),
    "recipe": ("recipe",),
    "mode": ("mode",),
    "status": ("status", "state"),
    "epoch": ("epoch",),
}

ACCURACIES = ("test_top1", "knn_top1", "train_top1")
VAL_SELECT = "val_top1"  # recorded per epoch with a validation split (data.val_fraction)
COMPLETED = "completed"
RUNNING = "running"

# Config keys that do not separate experimental arms: the seed, whether the run was compiled
# (rounding only), and every runtime-only key of the config (where or how fast a trial ran, not
# what it computed; `data.root` counts through the dataset label and `data.fingerprint`).
NON_ARM_KEYS = {"seed", "compile"} | runtime_keys()


def config_keys() -> list[str]:
    from tort_core.config import known_keys

    return known_keys()


def _rename(df: pd.DataFrame) -> pd.DataFrame:
    mapping = {}
    for canon, names in SYNONYMS.items():
        if canon in df.columns:
            continue
        for name in names:
            if name in df.columns and name not in mapping:
                mapping[name] = canon
                break
    return df.rename(columns=mapping)


def dataset_label(dataset: object, root: object = None) -> str:
    name = "" if dataset is None or (isinstance(dataset, float) and math.isnan(dataset)) else str(dataset)
    if name == "imagefolder" and isinstance(root, str) and root:
        return f"imagefolder:{Path(root).name}"
    return name or "unknown"


def _with_labels(df: pd.DataFrame) -> pd.DataFrame:
    if not ({"dataset", "data.dataset"} & set(df.columns)) and all(
            canon in df.columns or not any(n in df.columns for n in names) for canon, names in SYNONYMS.items()):
        return df  # nothing to rename or label (a store's metrics-only epoch rows): no copy
    df = _rename(df.copy())
    if "dataset" in df.columns and "data.dataset" not in df.columns:
        df["data.dataset"] = df["dataset"]
    if "data.dataset" in df.columns:
        roots = df["data.root"] if "data.root" in df.columns else pd.Series([None] * len(df), index=df.index)
        df["dataset"] = [dataset_label(d, r) for d, r in zip(df["data.dataset"], roots)]
    return df


def _is_loss(metric: str) -> bool:
    return metric == "loss" or metric.startswith("loss_")


def summarise_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: epochs_done; final_<m>, the value at the trial's last recorded epoch
    (NaN if it is not finite there: never an earlier epoch's value); best_<m> (max for accuracies,
    min for losses, over finite values; selection on whatever split m is, so the tests use final_
    values); `nonfinite_at_end`, the metrics finite earlier but not at the last epoch (such a trial
    diverged: `Store` marks it failed); and with a validation split (`val_top1`), valsel_<m>, the
    value at the epoch of the best val_top1 (model selection on validation, not on test)."""
    if epochs.empty:
        return pd.DataFrame(columns=["trial_id", "epochs_done"])
    metrics = [c for c in epochs.columns if c in ACCURACIES or _is_loss(c) or c == VAL_SELECT]
    e = epochs.sort_values(["trial_id", "epoch"], kind="stable")
    values = e[metrics].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
    tid = e["trial_id"]
    by = values.groupby(tid, sort=False)
    out = pd.DataFrame({"epochs_done": e.groupby("trial_id", sort=False)["epoch"].max().astype(int)})
    last = values[~tid.duplicated(keep="last")].set_axis(tid[~tid.duplicated(keep="last")])
    finite_anywhere = by.count() > 0
    for m in metrics:
        out[f"final_{m}"] = last[m]
        out[f"best_{m}"] = by[m].min() if _is_loss(m) else by[m].max()
    ended_bad = finite_anywhere & last.isna()
    out["nonfinite_at_end"] = [", ".join(c for c in metrics if row[c]) for row in ended_bad.to_dict("records")]
    if VAL_SELECT in metrics and values[VAL_SELECT].notna().any():
        at = values[VAL_SELECT].groupby(tid).idxmax().dropna()  # first epoch of the best val_top1
        chosen = values.loc[at.to_numpy()].set_axis(at.index)
        out["valsel_epoch"] = e.loc[at.to_numpy(), "epoch"].set_axis(at.index)
        for m in ACCURACIES:
            if m in chosen:
                out[f"valsel_{m}"] = chosen[m]
    never = [m for m in metrics if not finite_anywhere[m].any()]  # recorded by no trial at all
    out = out.drop(columns=[f"{p}_{m}" for m in never for p in ("final", "best")])
    return out.rename_axis("trial_id").reset_index()


@dataclass
class Store:
    epochs: pd.DataFrame
    trials: pd.DataFrame
    path: Path | None = None
    # (sweep, trial_id, axes): which sweeps contain a trial. A trial is computed once and shared by
    # every sweep that needs its config (the default value of an ablation is the compare run), and
    # a sweep's planned-but-unstarted trials appear here before they have any other row.
    members: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["sweep", "trial_id", "axes"]))

    @classmethod
    def from_frames(cls, epochs: pd.DataFrame | None, trials: pd.DataFrame | None = None,
                    path: Path | None = None, members: pd.DataFrame | None = None) -> Store:
        epochs = _with_labels(epochs if epochs is not None else pd.DataFrame())
        trials = _with_labels(trials if trials is not None else pd.DataFrame())
        if not epochs.empty:
            for col in ("trial_id", "epoch"):
                if col not in epochs.columns:
                    raise AnalysisError(f"results: per-epoch rows have no '{col}' column")
            # a resumed trial may have re-written epochs: the last write is the one that counts
            epochs = epochs.drop_duplicates(["trial_id", "epoch"], keep="last").reset_index(drop=True)
        if not trials.empty:
            if "trial_id" not in trials.columns:
                raise AnalysisError("results: trial rows have no 'trial_id' column")
            trials = trials.drop_duplicates("trial_id", keep="last")
        trials = _merge_trials(epochs, trials)
        members = _members(members, trials)
        return cls(epochs=epochs, trials=trials, path=path, members=members)

    # -- views ------------------------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return self.trials.empty

    def completed(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == COMPLETED] if not self.trials.empty else self.trials

    def curves(self, trial_ids) -> pd.DataFrame:
        """The per-epoch metric columns (not the config) of these trials: slicing the full, wide
        table row by row is what made analysis slow."""
        if self.epochs.empty:
            return self.epochs
        keys = set(config_keys())
        cols = ["trial_id", "epoch"] + [c for c in self.epochs.columns if c not in keys and c not in
                                        ("trial_id", "epoch") and pd.api.types.is_numeric_dtype(self.epochs[c])]
        return self.epochs.loc[self.epochs["trial_id"].isin(list(trial_ids)), cols]

    def sweeps(self) -> list[str]:
        if self.members.empty:
            return []
        return sorted(self.members["sweep"].dropna().astype(str).unique())

    def sweep_trials(self, sweep: str) -> pd.DataFrame:
        """Every trial the sweep contains (whichever sweep computed it), with `sweep` set to it."""
        ids = set(self.members.loc[self.members["sweep"] == sweep, "trial_id"].astype(str))
        if self.trials.empty:
            return self.trials.copy()
        t = self.trials[self.trials["trial_id"].astype(str).isin(ids)].copy()
        t["sweep"] = sweep
        return t

    def sweep_pending(self, sweep: str) -> int:
        """Trials the sweep planned that have no row yet (not started)."""
        ids = set(self.members.loc[self.members["sweep"] == sweep, "trial_id"].astype(str))
        return len(ids - set(self.trials["trial_id"].astype(str))) if not self.trials.empty else len(ids)

    def sweep_axes(self, sweep: str) -> list[str]:
        """The config keys the sweep's spec varies (from its members' axes), in first-seen order."""
        keys: dict[str, None] = {}
        for a in self.members.loc[self.members["sweep"] == sweep, "axes"]:
            value = parse_value(a) if isinstance(a, str) else a
            if isinstance(value, dict):
                keys.update(dict.fromkeys(value))
        return list(keys)

    def config_columns(self) -> list[str]:
        keys = set(config_keys())
        return [c for c in self.trials.columns if c in keys]


def _merge_trials(epochs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    computed = summarise_epochs(epochs) if not epochs.empty else pd.DataFrame(columns=["trial_id"])
    # Config and identity of trials known only from their epochs (no trial row yet: stores written
    # before the database, whose epoch rows carried the config).
    known = set(trials["trial_id"]) if not trials.empty else set()
    lone = epochs[~epochs["trial_id"].isin(known)] if not epochs.empty else epochs
    if not lone.empty:
        ident = lone.drop_duplicates("trial_id", keep="last")
        ident = ident[[c for c in ident.columns if not (c in ACCURACIES or _is_loss(c))
                       and c not in ("epoch", "step")]].copy()
        ident["status"] = RUNNING
    else:
        ident = pd.DataFrame(columns=["trial_id"])
    if trials.empty:
        base = ident.copy()
        base["status"] = RUNNING
    else:
        base = pd.concat([trials, ident], ignore_index=True) if len(ident) else trials.copy()
        if "status" not in base.columns:
            base["status"] = COMPLETED
        base["status"] = base["status"].fillna(RUNNING)
    if len(computed.columns) > 1:
        drop = [c for c in computed.columns if c != "trial_id" and c in base.columns]
        base = base.drop(columns=drop).merge(computed, on="trial_id", how="left")
    base["status"] = base["status"].astype(str).str.lower()
    if "nonfinite_at_end" in base.columns:  # a completed run whose last epoch is not finite diverged
        bad = (base["status"] == COMPLETED) & base["nonfinite_at_end"].fillna("").astype(bool)
        base.loc[bad, "status"] = "failed"
        base.loc[bad, "error"] = "non-finite at the last epoch: " + base.loc[bad, "nonfinite_at_end"]
    return base.reset_index(drop=True)


def _members(members: pd.DataFrame | None, trials: pd.DataFrame) -> pd.DataFrame:
    cols = ["sweep", "trial_id", "axes"]
    if members is not None and not members.empty:
        m = _rename(members.copy())
        if "axes" not in m.columns:
            m["axes"] = None
        return m[cols].drop_duplicates(["sweep", "trial_id"], keep="last").reset_index(drop=True)
    rows = []
    # Without the membership table: a trial's `sweeps` (JSON list) or else its own `sweep`.
    for r in trials.to_dict("records") if not trials.empty else []:
        names = parse_value(r.get("sweeps")) if isinstance(r.get("sweeps"), str) else None
        if not isinstance(names, list):
            names = [r.get("sweep")] if isinstance(r.get("sweep"), str) else []
        for name in names:
            rows.append({"sweep": name, "trial_id": r["trial_id"],
                         "axes": r.get("axes") if name == r.get("sweep") else None})
    return pd.DataFrame(rows, columns=cols)


def load_store(results_dir: str | Path) -> Store:
    """Read the store through `tort_core.store` (the writer owns the layout; no torch)."""
    path = Path(results_dir).expanduser()
    if not path.exists():
        raise ResultsNotFound(f"results directory '{path}' does not exist; run `tort sweep` or `tort compare` "
                              f"first, or pass --results DIR")
    if not path.is_dir():
        raise ResultsNotFound(f"results path '{path}' is not a directory")
    from tort_core.store import EPOCHS_TABLE, MEMBERS_TABLE, TRIALS_TABLE, ResultStore

    try:
        frames = ResultStore(path).read_all()  # one snapshot of the three tables, while drivers write
    except (OSError, ValueError, sqlite3.DatabaseError) as e:
        raise AnalysisError(f"results directory '{path}': the store cannot be read ({e}); it may be damaged") from None
    epochs, trials, members = frames[EPOCHS_TABLE], frames[TRIALS_TABLE], frames[MEMBERS_TABLE]
    if epochs.empty and trials.empty and members.empty:
        raise ResultsNotFound(f"results directory '{path}' holds no trials yet; run `tort sweep` or "
                              f"`tort compare` with --results {path}")
    return Store.from_frames(epochs, trials, path=path, members=members)


# ---------------------------------------------------------------------------------------------
# Arms: trials that differ only by seed

def arm_columns(trials: pd.DataFrame) -> list[str]:
    keys = set(config_keys())
    cols = [c for c in trials.columns if c in keys and c not in NON_ARM_KEYS]
    return sorted(cols) + (["dataset"] if "dataset" in trials.columns else [])


def arm_ids(trials: pd.DataFrame) -> pd.Series:
    """A short id per row, equal for trials whose configs differ only by seed or runtime keys."""
    cols = arm_columns(trials)
    if not cols:
        return pd.Series(["arm"] * len(trials), index=trials.index)
    blobs = pd.Series(["\x1f".join(value_label(v) for v in row) for row in trials[cols].itertuples(index=False)],
                      index=trials.index)
    codes = {b: f"a{i}" for i, b in enumerate(sorted(blobs.unique()))}
    return blobs.map(codes)


def varying_keys(trials: pd.DataFrame, ignore=("data.dataset", "dataset")) -> list[str]:
    """Config keys (not seed or runtime keys) that take more than one value among these trials."""
    return _varying({c: trials[c].map(value_label) for c in arm_columns(trials) if c not in ignore})


def parse_value(v: object) -> object:
    """Config values come back as JSON text for lists/dicts: turn them back into Python."""
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def value_label(v: object) -> str:
    """A canonical text form of a config value, equal for equal values however they were stored
    (6 vs 6.0, '[0.4, 0.6]' vs [0.4, 0.6])."""
    v = parse_value(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value_label(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "null"
        return str(int(f)) if f.is_integer() else f"{f:g}"
    return "null" if v is None else str(v)


# ---------------------------------------------------------------------------------------------
# Provenance

# The store writes `git.*`, `version.<package>` and `hw.<field>` columns; the hints catch other spellings.
PROVENANCE_PREFIXES = ("git.", "version.", "hw.")
PROVENANCE_MAX_VALUES = 3
PROVENANCE_SKIP = {"hw.pid", "hw.started_at"}  # per-attempt bookkeeping, not what produced a number
PROVENANCE_HINTS = ("commit", "version", "hardware", "gpu_name", "host", "platform")


def provenance(store: Store) -> dict[str, object]:
    """What produced the numbers: commits, versions, hardware, seeds, counts, failures."""
    t = store.trials
    out: dict[str, object] = {"results": str(store.path) if store.path else "(in memory)"}
    if t.empty:
        out["trials"] = 0
        return out
    counts = t["status"].value_counts().to_dict()
    out["trials"] = int(len(t))
    out["status_counts"] = {str(k): int(v) for k, v in counts.items()}
    if "seed" in t.columns:
        out["seeds"] = sorted({int(s) for s in pd.to_numeric(t["seed"], errors="coerce").dropna()})
    out["sweeps"] = store.sweeps()
    out["trials_per_sweep"] = {sw: int(len(store.sweep_trials(sw))) for sw in out["sweeps"]}
    out["pending_per_sweep"] = {sw: n for sw in out["sweeps"] if (n := store.sweep_pending(sw))}
    keys = set(config_keys())
    info: dict[str, dict[str, int]] = {}
    for c in t.columns:
        if c in keys or c.startswith(("final_", "best_")):
            continue
        if c in PROVENANCE_SKIP:
            continue
        if c.startswith(PROVENANCE_PREFIXES) or any(h in c.lower() for h in PROVENANCE_HINTS):
            vals = t[c].dropna().astype(str)
            vals = vals[vals.str.strip() != ""]
            if not len(vals):
                continue
            counts = vals.value_counts()
            if len(counts) > PROVENANCE_MAX_VALUES:  # per-trial values (pids, start times): summarise
                info[c] = {f"{len(counts)} distinct values": int(len(vals))}
            else:
                info[c] = {str(k): int(v) for k, v in counts.items()}
    out["environment"] = info
    failed = t[t["status"] == "failed"]
    cols = [c for c in ("sweep", "trial_id", "recipe", "dataset", "seed", "error") if c in failed.columns]
    out["failed"] = failed[cols].to_dict("records")
    return out
