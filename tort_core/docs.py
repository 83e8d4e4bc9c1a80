"""Reference pages generated from the code, so that they cannot drift from it.

    python -m tort_core.docs            # rewrite docs/configuration.md from the config's fields
    python -m tort_core.docs --check    # exit 1 if the committed page is not what the code gives

`docs/configuration.md` lists every key of `config.RunConfig` with its type, bounds, default and
description (each field's `description=`), marks the keys that are not part of a trial's id, and
gives tort's recipes' own defaults and profile adjustments. A test checks that the committed page
is current and that every field has a description.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .catalog import PROFILE_INFO, RECIPE_INFO
from .config import _DICT_FIELDS, RUNTIME_ONLY_KEYS, Resolved, RunConfig
from .fidelity import FIDELITIES, preset
from .registry import RECIPES

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

INTRO = """\
# Configuration

Every run is one `RunConfig` (`tort_core/config.py`), resolved in layers, later layers winning:

    field defaults (the thesis's Tort)  →  recipe defaults (per mode)  →  fidelity preset  →  profile
        →  the recipe's adjustments of that profile  →  a sweep's overrides and axes  →  --set

A key is a dotted path (`loss.teacher_temp`); the same names are `--set` keys, sweep-spec keys and
columns of the results store. `tort config --profile demo --recipe sota` prints a resolved config,
`tort config --keys` every key. An entry of a dict-valued key is set on its own with
`--set model.kwargs.depth=2` (the other entries stay). The fidelity preset (`--set fidelity=as_run`,
`docs/fidelity.md`) sets the keys where the thesis's text and its original code differ. Keys marked *runtime* change where or how
fast a run executes, not what it computes: they are not part of its trial id.

This page is generated from the fields' descriptions by `python -m tort_core.docs`; edit those,
not this page.
"""


def field_rows(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """(dotted key, field) of every settable key, sections expanded, in declaration order."""
    rows: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(field_rows(ann, f"{prefix}{name}."))
        else:
            rows.append((f"{prefix}{name}", field))
    return rows


def missing_descriptions() -> list[str]:
    return [key for key, field in field_rows() if not (field.description or "").strip()]


def _type(annotation: Any) -> str:
    """A short, readable name of a field's type: `float`, `auto | on | off`, `[float, float]`, ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_type(a) for a in args if a is not type(None)]
        return " \\| ".join(parts) + (" \\| null" if type(None) in args else "")
    if origin is tuple:
        return "[" + ", ".join(_type(a) for a in args) + "]"
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _number(x: float) -> str:
    if isinstance(x, int) and x >= 2**20 and x & (x - 1) == 0:
        return f"2^{x.bit_length() - 1}"  # a bound such as a seed's 2^63
    return f"{x:g}"


def _bounds(field: FieldInfo) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    found = [f"{signs[k]} {_number(getattr(m, k))}" for m in field.metadata for k in signs if hasattr(m, k)]
    return ", ".join(found)


def _value(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Path):
        value = str(value)
    return "`" + json.dumps(value, ensure_ascii=False).replace("|", "\\|") + "`"


def _default(field: FieldInfo) -> Any:
    return field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]


def configuration_page() -> str:
    runtime = {f"{section}.{key}" if section else key for section, key in RUNTIME_ONLY_KEYS}
    lines = [INTRO]
    sections: dict[str, list[tuple[str, FieldInfo]]] = {}
    for key, field in field_rows():
        sections.setdefault(key.split(".")[0] if "." in key else "", []).append((key, field))
    for section, rows in sections.items():
        title = f"`{section}`" if section else "Top level"
        doc = RunConfig.model_fields[section].annotation.__doc__ if section else None
        lines += [f"## {title}", ""]
        if doc and not doc.startswith(BaseModel.__doc__[:20] if BaseModel.__doc__ else "\0"):
            lines += [" ".join(doc.split()), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key, field in rows:
            kind = _type(field.annotation)
            bounds = _bounds(field)
            if bounds:
                kind += f" ({bounds})"
            if key.rsplit(".", 1)[-1] in _DICT_FIELDS:
                kind += "; entries settable one by one"
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            if key in runtime:
                meaning = "*runtime.* " + meaning
            lines.append(f"| `{key}` | {kind} | {_value(_default(field))} | {meaning} |")
        lines.append("")
    lines += ["## Recipes", "",
              "What each of tort's recipes sets above the field defaults (`tort recipes` lists plug-ins too).", ""]
    for name, info in RECIPE_INFO.items():
        recipe = RECIPES.get(name)()
        lines += [f"### `{name}`: {info.label}", "", info.summary[0].upper() + info.summary[1:] + ".", ""]
        scratch, finetune = recipe.defaults("scratch"), recipe.defaults("finetune")
        changed = {k: v for k, v in finetune.items() if scratch.get(k, object()) != v}
        below = Resolved(dict(scratch))
        adjustments = {p: recipe.profile_overrides(p, below) for p in PROFILE_INFO}
        presets = {f: {k: v for k, v in preset(name, "scratch", f).items() if v != below.get(k)} for f in FIDELITIES}
        if not scratch and not changed and not any(adjustments.values()) and not any(presets.values()):
            lines += ["The field defaults, as they are.", ""]
            continue
        lines += ["| key | value | when |", "|---|---|---|"]
        lines += [f"| `{k}` | {_value(v)} | always |" for k, v in scratch.items()]
        lines += [f"| `{k}` | {_value(v)} | mode finetune |" for k, v in changed.items()]
        lines += [f"| `{k}` | {_value(v)} | fidelity {f} |" for f, values in presets.items() for k, v in values.items()]
        written = ", fidelity written" if any(presets.values()) else ""  # the adjustments scale the preset's values
        lines += [f"| `{k}` | {_value(v)} | profile {p}{written} |" for p, values in adjustments.items()
                  for k, v in values.items()]
        lines.append("")
    lines += ["## Profiles", "", "`tort config --profile NAME` prints what a profile sets.", "",
              "| profile | what it is |", "|---|---|"]
    lines += [f"| `{p.name}` | {p.summary} |" for p in PROFILE_INFO.values()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not current")
    args = parser.parse_args(argv)
    missing = missing_descriptions()
    if missing:
        print(f"error: config fields without a description: {', '.join(missing)}", file=sys.stderr)
        return 1
    page = configuration_page()
    if args.check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE.name} is not current: run `python -m tort_core.docs`", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
