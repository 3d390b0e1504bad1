"""Run configuration: the root pydantic model built from the registry, and loading from YAML.

Typical use::

    manager = PluginManager()
    cfg = load_config("lsnet:demo", manager, overrides=["schedule.epochs=1"])
    cfg.model.head  # an instance of the head's own config model
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from lsvr_core.config.checks import check_run_config
from lsvr_core.config.defaults import fill_component_defaults
from lsvr_core.config.loader import apply_overrides, deep_merge, load_raw, validate
from lsvr_core.config.resolve import Resolver
from lsvr_core.config.sections import RunConfigBase
from lsvr_core.plugins import PluginManager

__all__ = [
    "apply_overrides",
    "build_config_model",
    "config_to_yaml",
    "deep_merge",
    "load_config",
    "load_raw",
    "resolver_for",
    "validate",
]


def build_config_model(manager: PluginManager) -> type[RunConfigBase]:
    """The root run-config model with one discriminated union per pluggable slot."""
    return resolver_for(manager).model(RunConfigBase)  # type: ignore[return-value]


def resolver_for(manager: PluginManager) -> Resolver:
    """A :class:`Resolver` over the registered configs of ``manager`` and the interfaces they implement."""
    by_kind: dict[str, list[Any]] = {}
    implements: dict[Any, tuple[str, ...]] = {}
    for spec in manager.components():
        if spec.config is not None:
            by_kind.setdefault(spec.kind, []).append(spec.config)
            implements[spec.config] = spec.implements
    return Resolver(by_kind, implements)


def load_config(ref: str | Path, manager: PluginManager, overrides: Sequence[str] = ()) -> RunConfigBase:
    """Read, merge, override and validate a config file or recipe reference.

    Raises:
        ConfigError: unreadable file, bad YAML, missing ``extends`` parent, bad override, invalid values or a
            failed cross-section check (:mod:`lsvr_core.config.checks`); the message names the file and the
            dotted path of each problem.
    """
    model = build_config_model(manager)
    data = fill_component_defaults(apply_overrides(load_raw(ref, manager), overrides), model)
    cfg = validate(data, model, str(ref))
    return check_run_config(cfg, manager, str(ref))


def config_to_yaml(cfg: BaseModel) -> str:
    """The fully resolved config as YAML (paths as strings, defaults included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
