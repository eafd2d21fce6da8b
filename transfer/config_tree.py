"""Walking a nested config (an mmengine Config, dicts and lists): the one walker of the engines' edits and checks."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def walk_paths(node: Any, path: str = "") -> Iterator[tuple[str, Mapping]]:
    """(dotted path, dict) of every dict inside `node`, depth first, the node itself included; list items are
    numbered (`custom_hooks.0`). A node reached twice (the same object) is yielded once, so an edit in place
    happens once. The yielded dicts are the config's own: edit them in place."""
    seen: set[int] = set()

    def visit(node: Any, path: str) -> Iterator[tuple[str, Mapping]]:
        node = getattr(node, "_cfg_dict", node)  # an mmengine Config: its (mutable) ConfigDict
        if id(node) in seen or not isinstance(node, (Mapping, list, tuple)):
            return
        seen.add(id(node))
        if isinstance(node, Mapping):
            yield path, node
            items = [(f"{path}.{key}" if path else str(key), value) for key, value in node.items()]
        else:
            items = [(f"{path}.{index}" if path else str(index), value) for index, value in enumerate(node)]
        for where, value in items:
            yield from visit(value, where)

    yield from visit(node, path)


def walk(node: Any) -> Iterator[Mapping]:
    """Every dict inside `node` (see `walk_paths`)."""
    for _, found in walk_paths(node):
        yield found
