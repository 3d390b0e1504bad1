"""Read run configs: YAML (safe loader), ``extends:`` inheritance, ``-o a.b.c=value`` overrides, validation.

``extends:`` names one parent, either a path (relative to the file that names it) or a recipe reference
``namespace:name`` (``lsvr recipes`` lists them). The child is deep-merged over the parent; a mapping whose
``type`` differs from the parent's replaces it instead of merging (so switching ``model.head.type`` does not
inherit the old head's keys). Overrides are YAML scalars set at dotted paths before validation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lsvr_core.errors import ConfigError, PluginError
from lsvr_core.plugins import PluginManager

_MAX_EXTENDS_DEPTH = 16


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def resolve_source(ref: str | Path, manager: PluginManager, base_dir: Path | None = None) -> Path:
    """Path of a config given as a file path or a ``namespace:name`` recipe reference."""
    text = str(ref)
    candidate = Path(text) if base_dir is None or Path(text).is_absolute() else base_dir / text
    if ":" in text and not candidate.exists() and not Path(text).exists():
        try:
            return manager.recipe(text).path()
        except PluginError as err:
            raise ConfigError(str(err)) from None
    return candidate if candidate.exists() or base_dir is not None else Path(text)


def deep_merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Merge ``child`` over ``parent`` (new dict); mappings with different ``type`` are replaced whole."""
    out = copy.deepcopy(parent)
    for key, value in child.items():
        old = out.get(key)
        same_type = not (isinstance(value, dict) and "type" in value and isinstance(old, dict)
                         and old.get("type") != value["type"])
        if isinstance(value, dict) and isinstance(old, dict) and same_type:
            out[key] = deep_merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_raw(ref: str | Path, manager: PluginManager) -> dict[str, Any]:
    """Read ``ref`` and its ``extends`` chain into one plain dict (not yet validated)."""
    chain: list[Path] = []
    path = resolve_source(ref, manager)
    data = _read_yaml(path)
    chain.append(path.resolve())
    layers = [data]
    while "extends" in layers[-1]:
        parent_ref = layers[-1].pop("extends")
        if not isinstance(parent_ref, str) or not parent_ref:
            raise ConfigError(f"{chain[-1]}: extends: must be one path or recipe name, got {parent_ref!r}")
        parent = resolve_source(parent_ref, manager, base_dir=chain[-1].parent)
        if not parent.exists():
            raise ConfigError(f"{chain[-1]}: extends: parent config {parent_ref!r} not found (looked for {parent})")
        if parent.resolve() in chain or len(chain) >= _MAX_EXTENDS_DEPTH:
            raise ConfigError(f"{chain[-1]}: extends: cycle or chain too long: {' -> '.join(map(str, chain))}")
        chain.append(parent.resolve())
        layers.append(_read_yaml(parent))
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged = deep_merge(merged, layer)
    return merged


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a copy of ``data``.

    Raises:
        ConfigError: an override without ``=``, an unparsable value, or a path through a non-mapping.
    """
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like a.b.c=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from None
        parts = key.strip().split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} is {nxt!r}, not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def format_validation_error(err: ValidationError, data: Any, source: str) -> str:
    """One line per problem: dotted path, message and the offending value (union tags are dropped)."""
    lines = []
    for item in err.errors():
        path, node = [], data
        for part in item["loc"]:
            if isinstance(node, dict) and part in node:
                node = node[part]
                path.append(str(part))
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
                path.append(f"[{part}]")
            elif isinstance(node, dict) and node.get("type") == part:
                continue  # discriminated-union tag, not a key
            else:
                path.append(str(part))
                node = None
        value = item.get("input")
        if item["type"] == "slot_type":  # a component type that does not fit its slot: point at `type`
            path.append("type")
            value = value.get("type") if isinstance(value, dict) else getattr(value, "type", value)
        dotted = ".".join(path).replace(".[", "[") or "(root)"
        shown = "" if isinstance(value, dict) or item["type"] == "missing" else f" (got {value!r})"
        lines.append(f"  {dotted}: {item['msg']}{shown}")
    return f"{source}: invalid config:\n" + "\n".join(lines)


def validate(data: dict[str, Any], model: type[BaseModel], source: str) -> BaseModel:
    """Validate ``data`` with ``model``; raise :class:`ConfigError` with readable messages."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, data, source)) from None
