"""What a block of the report is looking at: profile, mode, datasets, model, epochs per recipe,
and the overrides (config keys whose value differs from what the recipe and profile give)."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from .load import NON_ARM_KEYS, config_keys, value_label

SKIP = NON_ARM_KEYS | {"recipe", "mode", "data.dataset", "profile", "model.init"}


@lru_cache(maxsize=64)
def default_config(recipe: str, profile: str, mode: str) -> dict[str, str] | None:
    """Config keys → value labels of the recipe/profile/mode without overrides; None when that
    cannot be built (a recipe this install does not know)."""
    from tort_core.config import build_config
    from tort_core.errors import TortError

    try:
        flat = build_config(recipe, profile, mode, {"model.init": "unused.pth"} if mode == "finetune" else {},
                            check_names=False).flat()  # timm names need torch; the values do not
    except TortError:
        return None
    return {k: value_label(v) for k, v in flat.items()}


def _unique(trials: pd.DataFrame, col: str) -> list[str]:
    return sorted({value_label(v) for v in trials[col].dropna()}) if col in trials else []


def overrides(trials: pd.DataFrame) -> dict[str, list[str]]:
    """recipe → 'key=value' for every key that differs from its default in all of the recipe's
    trials (a key that takes several values reads 'key=a|b')."""
    out: dict[str, list[str]] = {}
    keys = [k for k in config_keys() if k in trials.columns and k not in SKIP]
    for (recipe, profile, mode), g in trials.groupby(["recipe", "profile", "mode"], sort=True, dropna=False):
        default = default_config(str(recipe), str(profile), str(mode))
        if default is None:
            out[str(recipe)] = [f"(unknown: recipe '{recipe}' cannot be built here)"]
            continue
        items = []
        for k in keys:
            values = _unique(g, k)
            if values and values != [default.get(k)]:
                items.append(f"{k}={'|'.join(values)}")
        out.setdefault(str(recipe), []).extend(items)
    return out


def epochs_text(trials: pd.DataFrame) -> str:
    parts = []
    for recipe, g in trials.groupby("recipe", sort=True):
        total = _unique(g, "total_epochs") or _unique(g, "epochs")
        parts.append(f"{recipe} {'|'.join(total) or '?'}")
    return ", ".join(parts)


def describe(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """(what, value) pairs for the trials a block uses."""
    if trials.empty:
        return []
    rows = [("profile", ", ".join(_unique(trials, "profile")) or "?"),
            ("mode", ", ".join(_unique(trials, "mode")) or "?"),
            ("datasets", ", ".join(_unique(trials, "dataset")) or "?"),
            ("model", ", ".join(_unique(trials, "model.name")) or "?"),
            ("epochs run (incl. cool-down)", epochs_text(trials))]
    if {"recipe", "profile", "mode"} <= set(trials.columns):
        ov = overrides(trials)
        rows.append(("overrides", "; ".join(f"{r}: {', '.join(v) or 'none'}" for r, v in ov.items()) or "none"))
    return rows


def describe_text(trials: pd.DataFrame) -> str:
    return " · ".join(f"{k}: {v}" for k, v in describe(trials))


def profiles(trials: pd.DataFrame) -> list[str]:
    return _unique(trials, "profile")
