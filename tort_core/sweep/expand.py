"""Expansion: a spec → concrete trials (grid × zipped groups × seeds × datasets).

Each `Trial` carries its fully resolved `RunConfig` (built by `config.build_config`, exactly as
`tort train` would build it) and its id, `RunConfig.content_hash()`: a hash of what the trial
computes, independent of the sweep's name, the order of axes, the machine or the process. Two
sweeps that contain the same configuration share its id, so the store computes it once.

    spec = load_spec("sweeps/teacher_temp.yaml")
    trials = expand(spec, profile="demo", sets={"epochs": 1})
    [t.id for t in trials]; trials[0].config; trials[0].axes   # {'loss.teacher_temp': 0.02}

Precedence: field defaults → recipe → profile → spec overrides → axis values → seed/dataset →
`--set` (a --set on an axis key replaces that axis, which then no longer varies).

Profiles and datasets: `datasets:` belongs to the spec's own profile. With another profile
(`--profile demo`), the trials use that profile's dataset (demo → the embedded digits) and the
spec's dataset list is set aside, so a thesis spec runs anywhere; `--set data.dataset=X` picks X.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig, build_config, check_root_used, runtime_keys, validate_names
from ..config import varying_keys as _varying
from ..errors import ConfigError
from .spec import POSITIONAL_KEYS, SweepSpec


@dataclass(frozen=True)
class Trial:
    """One configuration to train. `id` is `config.content_hash()`."""

    id: str
    sweep: str
    index: int
    seed: int
    dataset: str
    axes: dict[str, Any]  # the axis values that define this trial within its sweep
    config: RunConfig = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in self.axes.items()]
        return " ".join(parts + [f"seed={self.seed}", self.dataset])


def _short(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, tuple, dict)) else str(v)


@dataclass
class Expansion:
    """The trials of a spec under one profile and set of overrides, plus what varies between them."""

    spec: SweepSpec
    profile: str
    trials: list[Trial]
    varying: list[str]  # config keys (dotted) whose value differs between trials
    collapsed: list[str] = field(default_factory=list)  # axes replaced by --set
    duplicates: int = 0  # grid points that resolved to an identical config


def grid_points(spec: SweepSpec, drop: set[str] = frozenset()) -> list[dict[str, Any]]:
    """The axis combinations, in spec order: the grid's product crossed with every zipped group."""
    blocks: list[list[dict[str, Any]]] = []
    for key, values in spec.axes.items():
        if key not in drop:
            blocks.append([{key: v} for v in values])
    for group in spec.zip:
        keys = [k for k in group if k not in drop]
        if keys:
            n = len(group[keys[0]])
            blocks.append([{k: group[k][i] for k in keys} for i in range(n)])
    points = []
    for combo in itertools.product(*blocks):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(part)
        points.append(point)
    return points


# Trials a spec may expand to unless the caller raises the bound (`tort sweep --max-trials`):
# expanding resolves and validates every trial's config (milliseconds each), and each becomes a
# Tune trial; a typo such as a seed count of 10**6 should fail at once, not after minutes.
MAX_TRIALS = 10_000


def count_trials(spec: SweepSpec, drop: set[str] = frozenset(), datasets: int = 1) -> int:
    """How many trials the grid × zipped groups × seeds × datasets holds, without building them."""
    n = len(spec.seed_list) * datasets
    for key, values in spec.axes.items():
        if key not in drop:
            n *= len(values)
    for group in spec.zip:
        keys = [k for k in group if k not in drop]
        if keys:
            n *= len(group[keys[0]])
    return n


def expand(spec: SweepSpec, profile: str | None = None, sets: dict[str, Any] | None = None,
           max_trials: int = MAX_TRIALS) -> Expansion:
    """Resolve every trial's config; any invalid combination raises ConfigError before anything runs,
    and so does a spec of more than `max_trials` trials.

    Every trial is checked without torch first; the names only timm knows (model, optimizer) are
    checked last, once per distinct name, so a mistake anywhere else fails before timm is imported."""
    sets = dict(sets or {})
    src = spec.source
    profile = profile or spec.profile
    for key in ("seed", "profile"):
        if key in sets:
            raise ConfigError(f"--set {key}: not settable for a sweep; use the spec's 'seeds:' or --profile")
    collapsed = [k for k in spec.axis_keys() if k in sets]
    recipe = sets.pop("recipe", spec.recipe)
    mode = sets.pop("mode", spec.mode)
    n_datasets = 1 if "data.dataset" in sets or spec.datasets is None or profile != spec.profile else len(spec.datasets)
    n_trials = count_trials(spec, set(collapsed), n_datasets)
    if n_trials > max_trials:
        raise ConfigError(f"{src}: the spec expands to {n_trials:,} trials, more than the bound of {max_trials:,}; "
                          f"check the axes and seeds, or raise the bound with --max-trials {n_trials}")
    points = grid_points(spec, drop=set(collapsed))

    # The base must be valid on its own: blame overrides and --set before any combination.
    base = {**spec.overrides}
    named: dict[tuple, tuple[RunConfig, str]] = {}  # model and optimizer → where they are first set
    checked = [(build_config(recipe, profile, mode, _absolute(base), where=f"{src}: overrides", check_names=False),
                f"{src}: overrides")]
    if sets:
        checked.append((build_config(recipe, profile, mode, _absolute({**base, **sets}), where="--set",
                                     check_names=False), "--set"))
    for cfg, where in checked:
        named.setdefault(_timm_names(cfg), (cfg, where))

    if "data.dataset" in sets:
        datasets = [sets["data.dataset"]]
    elif spec.datasets is not None and profile == spec.profile:
        datasets = list(spec.datasets)
    else:
        datasets = [None]  # the profile's own dataset

    trials: list[Trial] = []
    seen: set[str] = set()
    duplicates = 0
    for ds in datasets:
        for point in points:
            for seed in spec.seed_list:
                overrides = dict(base)
                args = {"recipe": recipe, "mode": mode}
                for k, v in point.items():
                    if k in POSITIONAL_KEYS:
                        args[k] = v
                    else:
                        overrides[k] = v
                overrides["seed"] = seed
                if ds is not None:
                    overrides["data.dataset"] = ds
                overrides.update(sets)
                label = " ".join([f"{k}={_short(v)}" for k, v in point.items()] + [f"seed={seed}"]
                                 + ([ds] if ds else []))
                where = f"{src}: trial {label}"
                cfg = build_config(args["recipe"], profile, args["mode"], _absolute(overrides), where=where,
                                   check_names=False)
                cfg = _absolute_config(cfg)
                tid = cfg.content_hash()
                if tid in seen:
                    duplicates += 1
                    continue
                seen.add(tid)
                trials.append(Trial(id=tid, sweep=spec.name, index=len(trials), seed=seed,
                                    dataset=cfg.data.dataset, axes=dict(point), config=cfg))
                named.setdefault(_timm_names(cfg), (cfg, where))
    if "data.root" in sets or "data.root" in spec.overrides:
        check_root_used({t.dataset for t in trials}, "--data-root (--set data.root)" if "data.root" in sets else
                        f"{src}: overrides.data.root")
    for cfg, where in named.values():
        validate_names(cfg, where)
    return Expansion(spec=spec, profile=profile, trials=trials, varying=varying_keys([t.config for t in trials]),
                     collapsed=collapsed, duplicates=duplicates)


def _timm_names(cfg: RunConfig) -> tuple:
    """What `validate_names` checks: the model (its name, kwargs and size) and the optimizer."""
    return (cfg.model.name, json.dumps(cfg.model.kwargs, sort_keys=True, default=str), cfg.views.global_size,
            cfg.optim.name, cfg.optim.fused)


def varying_keys(configs: list[RunConfig]) -> list[str]:
    """Dotted keys whose value is not the same in every config (runtime-only keys ignored)."""
    if len(configs) < 2:
        return []
    flats = [c.flat() for c in configs]
    skip = runtime_keys()
    return _varying({k: [json.dumps(f.get(k), sort_keys=True) for f in flats] for k in flats[0] if k not in skip})


def _absolute(overrides: dict[str, Any]) -> dict[str, Any]:
    # Trials run in their own working directory: a relative path would point elsewhere there.
    out = dict(overrides)
    for key in ("data.root", "model.init"):
        if isinstance(out.get(key), str) and out[key]:
            out[key] = str(Path(out[key]).expanduser().resolve())
    return out


def _absolute_config(cfg: RunConfig) -> RunConfig:
    if cfg.data.root is not None and not Path(cfg.data.root).is_absolute():
        cfg.data.root = Path(cfg.data.root).expanduser().resolve()  # runtime-only: the id is unchanged
    return cfg
