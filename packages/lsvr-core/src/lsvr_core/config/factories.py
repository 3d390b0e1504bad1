"""Check, without importing anything, that every component a config selects has a factory module on disk.

``lsvr validate`` never imports torch, so it cannot import factory modules (they build torch modules). It
still finds a plugin whose ``factory = "module:callable"`` points at a module that does not exist: the module
is looked up with the import system's path finders, which read folders but run no code.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from lsvr_core.errors import PluginError
from lsvr_core.specs import SLOT_BASES, ComponentConfig


def _components(node: Any, path: str) -> Iterator[tuple[str, ComponentConfig]]:
    """``(dotted path, component config)`` of every component in a validated config, depth first."""
    if isinstance(node, ComponentConfig):
        yield path, node
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _components(getattr(node, name), f"{path}.{name}" if path else name)
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from _components(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _components(item, f"{path}.{key}")


def module_exists(name: str) -> bool:
    """True when module ``name`` can be found (imported parents are used; nothing new is executed)."""
    if name in sys.modules:
        return True
    parts = name.split(".")
    spec = None
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        if full in sys.modules:
            spec = sys.modules[full].__spec__
            continue
        search = None if i == 0 else (spec.submodule_search_locations if spec is not None else None)
        if i > 0 and not search:
            return False
        spec = importlib.machinery.PathFinder.find_spec(full, search) if i else importlib.util.find_spec(full)
        if spec is None:
            return False
    return True


def check_factories(cfg: BaseModel, manager: Any) -> None:
    """Raise :class:`PluginError` naming each selected component whose factory module does not exist."""
    problems = []
    for path, comp in _components(cfg, ""):
        kind = next((k for k, base in SLOT_BASES.items() if isinstance(comp, base)), None)
        if kind is None:
            continue
        spec = manager.get(kind, comp.type)
        module = spec.factory.partition(":")[0]
        if not module_exists(module):
            problems.append(f"  {path}: {kind} {comp.type!r} of plugin {spec.plugin!r} ({spec.distribution}): its "
                            f"factory module {module!r} (factory {spec.factory!r}) cannot be found")
    if problems:
        raise PluginError("the config selects components that cannot be built:\n" + "\n".join(problems))
