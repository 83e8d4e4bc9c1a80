"""YAML from untrusted text (spec files, `--set` values): safe types only, duplicate keys refused,
and bounded in size, depth and expanded size, so that a hostile or mistaken file fails with one
line instead of running code or exhausting the machine.

PyYAML's SafeLoader builds no objects beyond plain data, but it does not bound what it builds:
an alias "bomb" (`a: &a [x, x]`, `b: &b [*a, *a]`, ...) loads as a small graph of shared lists
that grows exponentially the moment anything walks or copies it (validation, JSON, hashing); and a
deeply nested document exhausts Python's recursion. `load` counts every node as the data would be
walked, shared ones once per use, and stops at `MAX_NODES`.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1_000_000  # a spec is a few kB; a megabyte is not a spec
MAX_NODES = 100_000  # values after expanding aliases (a 10,000-trial grid spec has a few hundred)
MAX_DEPTH = 64  # nesting of lists and mappings


class YamlLimitError(ValueError):
    """The text is valid YAML but too large or too deep to be a spec or a value."""


class DuplicateKeyError(ValueError):
    """A mapping names the same key twice (PyYAML would silently keep the last)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key (a list); construct_mapping reports it
            first = None
        if first is not None:
            raise DuplicateKeyError(f"line {key_node.start_mark.line + 1}: key '{key}' appears twice (first on line "
                                    f"{first + 1}); a duplicate axis or field — keep one")
        try:
            seen[key] = key_node.start_mark.line
        except TypeError:
            pass
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def check_size(data: Any, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> int:
    """The number of values in `data` as a walk would see them (shared lists and mappings once per
    reference); raises YamlLimitError past `max_nodes` values or `max_depth` levels. Iterative, so
    the check itself cannot overflow the stack."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise YamlLimitError(f"more than {max_nodes:,} values once aliases are expanded (an alias bomb, or a "
                                 f"generated file far larger than a spec); write the values out plainly")
        if isinstance(value, (list, tuple, dict)):
            if depth >= max_depth:
                raise YamlLimitError(f"nested more than {max_depth} levels deep")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for k, v in items:
                if k is not None:
                    stack.append((k, depth + 1))
                stack.append((v, depth + 1))
    return count


def load(text: str, max_bytes: int = MAX_BYTES) -> Any:
    """Parse `text` as YAML data; YamlLimitError if it is too large, too deep or expands too far,
    DuplicateKeyError on a repeated key, yaml.YAMLError if it is not YAML."""
    if len(text) > max_bytes:
        raise YamlLimitError(f"{len(text):,} characters; a spec or value is at most {max_bytes:,}")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep") from None
    check_size(data)
    return data
