"""The plug-in registries, one per kind: `DATASETS`, `RECIPES`, `LOSSES`, and how a name is found.

    from tort_core.registry import RECIPES
    "sota" in RECIPES               # a name check: imports no implementation (no torch)
    RECIPES.get("sota")             # the implementation; its module is imported on first use
    RECIPES.info("sota").summary    # its catalog entry

A name comes from one of two places, both read without importing any implementation:

* tort's own: the entries of `catalog.py` (`DATASET_INFO`, `RECIPE_INFO`, `LOSS_INFO`), each naming
  the module that registers it;
* a plug-in of an installed package: an entry point in the group `tort.datasets`, `tort.recipes` or
  `tort.losses` of that package's metadata, e.g. in its pyproject.toml

      [project.entry-points."tort.recipes"]
      byol = "tort_byol.recipe:ByolRecipe"

  The entry point's name is the name users write; its object (loaded on first `get`) is
  registered under it. A plug-in brings its own catalog entry: the object's `info` attribute (a
  `RecipeInfo`, `LossInfo` or `DatasetInfo`), or `register(name, info=...)`; without one, its
  docstring's first line serves as the summary. A plug-in cannot take a built-in's name.

A module registers an implementation with the decorator `@RECIPES.register("name")`. Unknown names
fail with the list of known ones and a near-miss suggestion.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import types
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from .catalog import DATASET_INFO, LOSS_INFO, RECIPE_INFO, DatasetInfo, LossInfo, RecipeInfo
from .errors import ConfigError

T = TypeVar("T")


def suggest(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for a near miss, else ''."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """Names → implementations of one kind of plug-in (see the module's docstring)."""

    def __init__(self, kind: str, group: str, builtin: Mapping[str, Any], default_info: Callable[[str, Any], Any]):
        self.kind = kind
        self.group = group  # the entry-point group of plug-ins
        self._builtin = builtin  # name → catalog entry, whose `module` registers it
        self._default_info = default_info
        self._items: dict[str, T] = {}
        self._infos: dict[str, Any] = {}
        self._plugins: dict[str, EntryPoint] | None = None

    def register(self, name: str, info: Any = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            if info is not None:
                self._infos[name] = info
            return obj

        return deco

    def plugins(self) -> dict[str, EntryPoint]:
        """Entry points of installed packages in this registry's group, by name (read once)."""
        if self._plugins is None:
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=self.group):
                if ep.name not in self._builtin:
                    found.setdefault(ep.name, ep)
            self._plugins = found
        return self._plugins

    def names(self) -> list[str]:
        return sorted(set(self._builtin) | set(self.plugins()) | set(self._items))

    def loaded(self) -> list[str]:
        """The names whose implementation has been registered so far (imported)."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._builtin or name in self._items or name in self.plugins())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unknown(self, name: str) -> str:
        """The one-line message for a name that is not registered."""
        names = self.names()
        return f"unknown {self.kind} '{name}'{suggest(str(name), names)}; choose one of: {', '.join(names)}"

    def check(self, name: str) -> None:
        """ConfigError unless `name` is known; imports nothing."""
        if name not in self:
            raise ConfigError(self.unknown(name))

    def get(self, name: str) -> T:
        """The implementation of `name`, importing the module that registers it on first use."""
        if name not in self._items:
            self.check(name)
            self._load(name)
        return self._items[name]

    def info(self, name: str) -> Any:
        """The catalog entry of `name`: tort's own from `catalog.py`, a plug-in's from the plug-in."""
        if name in self._builtin:
            return self._builtin[name]
        obj = self.get(name)
        return self._infos.get(name) or getattr(obj, "info", None) or self._default_info(name, obj)

    def _load(self, name: str) -> None:
        if name in self._builtin:
            module = self._builtin[name].module
            importlib.import_module(module)
            if name not in self._items:
                raise LookupError(f"catalog.py lists the {self.kind} '{name}' in {module}, which does not register it")
            return
        ep = self.plugins()[name]
        where = f"entry point {self.group}:{name} = {ep.value}" + (f" of the package '{ep.dist.name}'" if ep.dist else "")
        try:
            obj = ep.load()
        except Exception as err:  # noqa: BLE001 - any failure of a plug-in's import is reported as one line
            raise ConfigError(f"{self.kind} '{name}': its plug-in failed to load ({where}): "
                              f"{type(err).__name__}: {err}") from None
        if name not in self._items:
            if isinstance(obj, types.ModuleType):
                raise ConfigError(f"{self.kind} '{name}': {where} names a module that registers no {self.kind} "
                                  f"'{name}'; name the object (module:attr) or register it under that name")
            self._items[name] = obj


def _summary(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").split("\n")[0]


DATASETS: Registry[Callable[..., Any]] = Registry(
    "dataset", "tort.datasets", DATASET_INFO,
    lambda name, obj: DatasetInfo(name, _summary(obj) or name, None, f"the plug-in {obj.__module__}",
                                  module=obj.__module__))
RECIPES: Registry[type] = Registry(
    "recipe", "tort.recipes", RECIPE_INFO,
    lambda name, obj: RecipeInfo(name, name, _summary(obj), module=obj.__module__))
LOSSES: Registry[type] = Registry(
    "loss", "tort.losses", LOSS_INFO,
    lambda name, obj: LossInfo(name, name, _summary(obj), module=obj.__module__))
