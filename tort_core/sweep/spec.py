"""Sweep specs: a YAML file that names a base config and the axes to vary, validated up front.

    name: teacher_temp
    description: teacher temperature ablation (thesis §4)
    recipe: tort
    profile: thesis
    overrides: {optim.warmup_epochs: 10}
    axes:
      loss.teacher_temp: [0.02, 0.04, 0.06, 0.08, 0.10]
    zip:                                 # optional: keys in one group vary together
      - {loss.student_temp: [0.1, 0.2], loss.warmup_teacher_temp: [0.04, 0.07]}
    seeds: 3                             # or [0, 1, 2]
    datasets: [flowers102]
    resources: {gpus: auto, cpus: auto}  # per trial; fractional GPUs allowed
    max_concurrent: 4
    retries: 1
    early_stop: {metric: test_top1, mode: max, grace_period: 10, reduction_factor: 3}

Everything that can be checked without building a model is checked here, and every problem is a
`ConfigError` naming the file and the key (`sweeps/x.yaml: axes.loss.teacher_temp[0]: ...`), so a
bad spec never starts a trial. Cross-key checks (warm-up vs epochs, ...) happen at expansion,
still before anything runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError, field_validator

from ..config import _DICT_FIELDS, PROFILES, RunConfig, check_key, known_keys
from .. import safe_yaml
from ..errors import ConfigError
from ..registry import DATASETS, RECIPES, suggest

# Keys that a spec varies through its own fields, not through axes/overrides.
RESERVED_KEYS = {
    "seed": "use 'seeds:' (a count or a list)",
    "data.dataset": "use 'datasets:' (a list of dataset names)",
    "profile": "use 'profile:' (or --profile)",
}
# Top-level config arguments that build_config takes positionally; they may still be axes.
POSITIONAL_KEYS = ("recipe", "mode")

MAX_NAME = 100  # a sweep's name becomes file and folder names (Ray's experiment folder among them)
MAX_SEEDS = 100_000

# Metrics an early-stopping rule may watch (losses are matched by prefix).
STOP_METRICS = ("test_top1", "knn_top1", "train_top1", "loss")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Model):
    """Per-trial resources. `auto` GPUs: 1 when the cluster has GPUs, else 0. `auto` CPUs: 1 for a
    CPU trial, and for a GPU trial the cluster's CPUs per GPU, at most 4 (data-loading workers)."""

    gpus: Union[float, Literal["auto"]] = "auto"
    cpus: Union[float, Literal["auto"]] = "auto"

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v):
        if v != "auto" and v < 0:
            raise ValueError(f"must be >= 0 (fractions such as 0.5 share a GPU), got {v}")
        return v

    @field_validator("cpus")
    @classmethod
    def _cpus(cls, v):
        if v != "auto" and v <= 0:
            raise ValueError(f"must be > 0, got {v}")
        return v


class EarlyStop(_Model):
    """ASHA: at epochs grace_period·rf^k, stop trials below the top 1/rf of their rung."""

    metric: str = "test_top1"
    mode: Literal["max", "min"] = "max"
    grace_period: int = Field(1, ge=1, description="epochs before a trial can be stopped")
    reduction_factor: float = Field(3.0, gt=1)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in STOP_METRICS and not v.startswith("loss_"):
            raise ValueError(f"unknown metric '{v}'{suggest(v, list(STOP_METRICS))}; "
                             f"choose one of {', '.join(STOP_METRICS)} or a loss_<name> component")
        return v


class SweepSpec(_Model):
    name: str = Field(..., description="sweep name: letters, digits, '_', '-', '.'")
    description: str = ""
    recipe: str = "tort"
    profile: str = "thesis"
    mode: Literal["scratch", "finetune"] = "scratch"
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted config keys → value")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description="grid: key → list of values")
    zip: list[dict[str, list[Any]]] = Field(default_factory=list,
                                            description="groups of keys varied together (equal lengths)")
    seeds: Union[StrictInt, list[StrictInt]] = Field(1, description="a count (0..n-1) or a list of seeds")
    datasets: list[str] | None = Field(None, description="dataset names; default: the profile's dataset")
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, ge=1)
    retries: int = Field(1, ge=0, description="re-runs of a crashed trial, resuming from its last epoch")
    early_stop: EarlyStop | None = None

    # Not part of the YAML: where the spec came from, for messages.
    source: str = Field("<spec>", exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"'{v}' is not a valid sweep name; use letters, digits, '_', '-' and '.'")
        if len(v) > MAX_NAME:
            raise ValueError(f"the name has {len(v)} characters; it names files and folders, so keep it to "
                             f"{MAX_NAME} (put prose in 'description:')")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"a seed count must be >= 1, got {v}")
            if v > MAX_SEEDS:
                raise ValueError(f"{v:,} seeds; at most {MAX_SEEDS:,} (list the seeds to use larger values)")
        else:
            if not v:
                raise ValueError("the list of seeds is empty; give a count (seeds: 3) or a list")
            if len(set(v)) != len(v):
                raise ValueError(f"seeds listed twice: {v}")
            if any(s < 0 or s >= 2**63 for s in v):
                bad = next(s for s in v if s < 0 or s >= 2**63)
                raise ValueError(f"a seed must satisfy 0 <= seed < 2**63, got {bad}")
        return v

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def axis_keys(self) -> list[str]:
        return list(self.axes) + [k for group in self.zip for k in group]


def _yaml_error(path: str, err: yaml.YAMLError) -> ConfigError:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return ConfigError(f"{path}: {where}: malformed YAML: {problem}; fix the syntax (indentation, ':' and "
                       f"brackets)")


# ---------------------------------------------------------------------------------------------

def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file; every problem is one ConfigError naming the file and key."""
    p = Path(path)
    src = str(path)
    if not p.is_file():
        hint = ""
        if p.suffix == "" and Path(f"{path}.yaml").is_file():
            hint = f" (did you mean '{path}.yaml'?)"
        elif not p.is_absolute() and (Path("sweeps") / p.name).is_file() and not str(path).startswith("sweeps"):
            hint = f" (did you mean 'sweeps/{p.name}'?)"
        raise ConfigError(f"{src}: spec file not found{hint}; pass the path of a YAML spec such as "
                          f"sweeps/teacher_temp.yaml")
    if p.stat().st_size > safe_yaml.MAX_BYTES:
        raise ConfigError(f"{src}: {p.stat().st_size:,} bytes; a spec is YAML text of at most "
                          f"{safe_yaml.MAX_BYTES:,} bytes")
    try:
        data = safe_yaml.load(p.read_text())
    except yaml.YAMLError as err:
        raise _yaml_error(src, err) from None
    except (safe_yaml.DuplicateKeyError, safe_yaml.YamlLimitError) as err:
        raise ConfigError(f"{src}: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{src}: not a text file; a spec is YAML text") from None
    if data is None:
        raise ConfigError(f"{src}: the spec is empty; it needs at least 'name:' and 'axes:' or 'seeds:'")
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: a spec is a YAML mapping (name:, axes:, ...), got a {type(data).__name__}")
    data.setdefault("name", p.stem)
    return spec_from_dict(data, src)


def spec_from_dict(data: dict[str, Any], source: str = "<spec>") -> SweepSpec:
    fields = [f for f in SweepSpec.model_fields if f != "source"]
    for key in data:
        if key not in fields:
            raise ConfigError(f"{source}: {key}: unknown spec field{suggest(str(key), fields)}; "
                              f"the fields are {', '.join(fields)}")
    data = dict(data)
    data["overrides"] = _flatten_overrides(data.get("overrides"), source)
    if isinstance(data.get("axes"), dict):
        data["axes"] = {str(k): v for k, v in data["axes"].items()}  # YAML may read a key as a number
    _check_axis_shapes(data, source)
    try:
        spec = SweepSpec.model_validate({**data, "source": source})
    except ValidationError as err:
        raise ConfigError(_spec_message(err, source)) from None
    _check_names(spec)
    _check_keys(spec)
    _check_values(spec)
    return spec


def _spec_message(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    # pydantic names the member of a union it tried (`seeds.int`); the user wrote `seeds`
    union_members = {"int", "list[int]", "float", "literal['auto']"}
    loc = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p in union_members))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        section, key = ".".join(str(p) for p in first["loc"][:-1]), str(first["loc"][-1])
        model = {"resources": Resources, "early_stop": EarlyStop}.get(section)
        names = list(model.model_fields) if model else []
        msg = f"unknown field{suggest(key, names)}" + (f"; the fields are {', '.join(names)}" if names else "")
    got = first.get("input")
    if first["loc"][:1] == ("seeds",) and first["type"] != "value_error":
        # a union: report the list element that failed, if that is what went wrong
        element = next((e for e in err.errors() if len(e["loc"]) == 3 and e["loc"][0] == "seeds"), None)
        got = element["input"] if element is not None else got
        return f"{source}: seeds: expected a count (seeds: 3) or a list of integers (seeds: [0, 1, 2]), got {got!r}"
    if first["type"] not in ("extra_forbidden", "value_error", "missing") and not isinstance(got, (dict, list)):
        msg += f", got {got!r}"
    return f"{source}: {loc or 'spec'}: {msg}"


def _flatten_overrides(value: Any, source: str) -> dict[str, Any]:
    """Accept dotted keys and nested sections alike: {loss: {teacher_temp: 0.04}} == {loss.teacher_temp: 0.04}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: overrides: expected a mapping of config keys to values, got "
                          f"{type(value).__name__}; e.g. overrides: {{loss.teacher_temp: 0.04}}")
    keys = set(known_keys())
    out: dict[str, Any] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            is_section = any(x.startswith(key + ".") for x in keys) and key not in keys
            if isinstance(v, dict) and is_section and key.split(".")[-1] not in _DICT_FIELDS:
                walk(v, key + ".")
            else:
                out[key] = v

    walk(value, "")
    return out


def _check_axis_shapes(data: dict[str, Any], source: str) -> None:
    """Axis values must be non-empty lists; say so before pydantic's generic message."""
    axes = data.get("axes")
    if axes is not None and not isinstance(axes, dict):
        raise ConfigError(f"{source}: axes: expected a mapping of config keys to lists of values, got "
                          f"{type(axes).__name__}; e.g. axes: {{loss.teacher_temp: [0.02, 0.04]}}")
    groups = data.get("zip")
    if groups is not None and not isinstance(groups, list):
        raise ConfigError(f"{source}: zip: expected a list of groups, each a mapping of keys to equal-length "
                          f"lists; e.g. zip: [{{a: [1, 2], b: [3, 4]}}]")
    named: list[tuple[str, Any]] = [(f"axes.{k}", v) for k, v in (axes or {}).items()]
    for i, group in enumerate(groups or []):
        if not isinstance(group, dict) or not group:
            raise ConfigError(f"{source}: zip[{i}]: expected a non-empty mapping of keys to equal-length lists")
        named += [(f"zip[{i}].{k}", v) for k, v in group.items()]
    for where, values in named:
        if not isinstance(values, list):
            hint = f"[{values!r}]" if not isinstance(values, dict) else "[...]"
            raise ConfigError(f"{source}: {where}: an axis is a list of values, got {values!r}; write {hint}, "
                              f"or move a fixed value to overrides")
        if not values:
            raise ConfigError(f"{source}: {where}: empty axis; give at least one value or remove the key")


def _check_names(spec: SweepSpec) -> None:
    # From the catalog and the plug-ins' metadata: nothing is imported.
    src = spec.source
    if spec.recipe not in RECIPES:
        raise ConfigError(f"{src}: recipe: unknown recipe '{spec.recipe}'{suggest(spec.recipe, RECIPES.names())}; "
                          f"choose one of {', '.join(RECIPES.names())}")
    if spec.profile not in PROFILES:
        raise ConfigError(f"{src}: profile: unknown profile '{spec.profile}'{suggest(spec.profile, list(PROFILES))}; "
                          f"choose one of {', '.join(PROFILES)}")
    if spec.datasets is not None:
        if not spec.datasets:
            raise ConfigError(f"{src}: datasets: the list is empty; name at least one dataset or remove the field")
        for i, name in enumerate(spec.datasets):
            if name not in DATASETS:
                raise ConfigError(f"{src}: datasets[{i}]: unknown dataset '{name}'{suggest(name, DATASETS.names())}; "
                                  f"choose from {', '.join(DATASETS.names())}")
        if len(set(spec.datasets)) != len(spec.datasets):
            raise ConfigError(f"{src}: datasets: a dataset is listed twice: {spec.datasets}")


def _check_keys(spec: SweepSpec) -> None:
    src = spec.source
    seen: dict[str, str] = {}
    places = [(f"axes.{k}", k) for k in spec.axes]
    places += [(f"zip[{i}].{k}", k) for i, g in enumerate(spec.zip) for k in g]
    for where, key in places:
        _check_one_key(key, where, src)
        if key in seen:
            raise ConfigError(f"{src}: {where}: duplicate axis, already varied by {seen[key]}; keep one")
        seen[key] = where
        if key in spec.overrides:
            raise ConfigError(f"{src}: {where}: '{key}' is both an axis and an override; remove it from overrides")
    for key in spec.overrides:
        _check_one_key(key, f"overrides.{key}", src)
        if key in POSITIONAL_KEYS:
            raise ConfigError(f"{src}: overrides.{key}: set it as the spec field '{key}:' instead")
    for i, group in enumerate(spec.zip):
        lengths = {k: len(v) for k, v in group.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"{src}: zip[{i}]: zipped axes need equal lengths, got "
                              f"{', '.join(f'{k}={n}' for k, n in lengths.items())}")


def _check_one_key(key: str, where: str, src: str) -> None:
    if key in RESERVED_KEYS:
        raise ConfigError(f"{src}: {where}: '{key}' cannot be set here; {RESERVED_KEYS[key]}")
    try:
        check_key(key, where=f"{src}: {where}")
    except ConfigError as err:
        raise ConfigError(str(err).replace("; see `tort config --keys`", "; `tort config --keys` lists them")) from None


# ---------------------------------------------------------------------------------------------
# Value checks, field by field, on a default config (no model, no torch import for most keys):
# a wrong type or range is reported at its own axis entry rather than as a whole trial.

def _check_values(spec: SweepSpec) -> None:
    src = spec.source
    for key, value in spec.overrides.items():
        check_value(key, value, f"{src}: overrides.{key}")
    for key, values in spec.axes.items():
        _check_axis(key, values, f"{src}: axes.{key}")
    for i, group in enumerate(spec.zip):
        for key, values in group.items():
            _check_axis(key, values, f"{src}: zip[{i}].{key}", unique=False)
        # within a group a key may repeat a value; whole rows may not
        rows = [json.dumps([group[k][j] for k in group], default=str) for j in range(len(next(iter(group.values()))))]
        for j, r in enumerate(rows):
            if r in rows[:j]:
                raise ConfigError(f"{src}: zip[{i}]: row {j} repeats row {rows.index(r)}; remove the duplicate")


def check_sets(sets: dict[str, Any]) -> dict[str, Any]:
    """A sweep's `--set` overrides, each key and value checked as a spec's overrides are (no torch,
    no pandas: before the runner is imported); returns them. Cross-key checks come at expansion."""
    for key, value in sets.items():
        check_key(key, "--set")
        check_value(key, value, f"--set: {key}")
    return sets


def _check_axis(key: str, values: list[Any], where: str, unique: bool = True) -> None:
    reprs = [json.dumps(v, sort_keys=True, default=str) for v in values]
    for i, r in enumerate(reprs):
        if unique and r in reprs[:i]:
            raise ConfigError(f"{where}[{i}]: value {values[i]!r} is listed twice; remove the duplicate")
    for i, v in enumerate(values):
        check_value(key, v, f"{where}[{i}]", hint_list=all(not isinstance(x, (list, tuple)) for x in values))


def check_value(key: str, value: Any, where: str, hint_list: bool = False) -> None:
    """Validate one value of one dotted key, as RunConfig would."""
    if key in POSITIONAL_KEYS:
        if key == "recipe" and value not in RECIPES:
            raise ConfigError(f"{where}: unknown recipe {value!r}{suggest(str(value), RECIPES.names())}; "
                              f"choose one of {', '.join(RECIPES.names())}")
        if key == "mode" and value not in ("scratch", "finetune"):
            raise ConfigError(f"{where}: mode must be 'scratch' or 'finetune', got {value!r}")
        return
    parts = key.split(".")
    if len(parts) >= 2 and parts[-2] in _DICT_FIELDS:
        return  # an entry of a free-form dict (model.kwargs.depth): checked when the config is built
    try:
        if len(parts) == 1:
            # RunConfig's own fields: validate against the field alone, not the model's cross-checks
            info = RunConfig.model_fields[parts[0]]
            TypeAdapter(Annotated[info.annotation, info]).validate_python(value)
            ann = str(info.annotation)
        else:
            target: Any = RunConfig()
            for p in parts[:-1]:
                target = getattr(target, p)
            setattr(target, parts[-1], value)  # sections validate on assignment, field validators included
            ann = str(type(target).model_fields[parts[-1]].annotation)
    except ValidationError as err:
        e = err.errors()[0]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] != "value_error":
            msg += f", got {value!r}"
        info = RunConfig.model_fields.get(parts[0]) if len(parts) == 1 else None
        ann = str(info.annotation) if info else _annotation(parts)
        if hint_list and ("tuple" in ann or "list" in ann):
            msg += " (each axis value of a pair/list key is itself a list: [[0.1, 0.3], [0.2, 0.4]])"
        raise ConfigError(f"{where}: {msg}") from None


def _annotation(parts: list[str]) -> str:
    model: Any = RunConfig
    for p in parts[:-1]:
        model = model.model_fields[p].annotation
    return str(model.model_fields[parts[-1]].annotation)
