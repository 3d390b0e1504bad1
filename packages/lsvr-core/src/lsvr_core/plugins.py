"""Plugin discovery and the component registry.

Load order: lsvr-core's built-in plugins, then the ``lsvr`` entry points of installed distributions, then
plugin files given with ``--plugin file.py``. ``LSVR_DISABLE_PLUGINS=a,b`` skips entry points (and files)
by name; ``LSVR_TRACE_PLUGINS=1`` prints every hook call to stderr.

A plugin that fails to import does not stop discovery: it is recorded with its error, shown by
``lsvr plugins``, and :meth:`PluginManager.raise_for_failures` turns it into a :class:`PluginError` for
verbs that need a complete registry (``lsvr run``). Any exception counts as a failure, ``SystemExit`` and
other ``BaseException`` subclasses included; only ``KeyboardInterrupt`` still interrupts. A second plugin
registering a (kind, name), recipe or weight format that is already taken is marked failed the same way,
with a message naming both distributions: ``lsvr plugins`` and ``--help`` still work, ``lsvr run`` stops.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pluggy

from lsvr_core import hookspecs
from lsvr_core.errors import PluginError
from lsvr_core.fields import TargetFieldSpec
from lsvr_core.specs import KINDS, ComponentSpec, ConverterSpec, RecipeSpec

ENTRY_POINT_GROUP = "lsvr"
BUILTIN_PLUGINS = (
    ("lsvr_core.builtin.plugin", "builtin"),
    ("lsvr_core.builtin.loggers", "loggers"),
    ("lsvr_core.builtin.tensorboard_logger", "tensorboard"),
)
_REGISTRATION_HOOKS = {
    "backbone": "lsvr_backbones",
    "neck": "lsvr_necks",
    "head": "lsvr_heads",
    "assigner": "lsvr_assigners",
    "loss": "lsvr_losses",
    "dataset": "lsvr_datasets",
    "evaluator": "lsvr_evaluators",
    "layer": "lsvr_layers",
}


@dataclass
class PluginRecord:
    """What ``lsvr plugins`` shows for one plugin.

    ``status`` is ``ok``, ``failed`` (``error`` holds the message) or ``disabled``.
    """

    name: str
    distribution: str
    version: str
    source: str  # "builtin", "entry point" or the plugin file path
    status: str = "ok"
    error: str = ""
    components: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "source": self.source,
            "status": self.status,
            "error": self.error,
            "components": self.components,
        }


def _disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get("LSVR_DISABLE_PLUGINS", "").split(",") if n.strip()}


def _format_import_error(err: BaseException) -> str:
    last = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
    where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(err).__name__}: {err}{where}"


class PluginManager:
    """pluggy manager plus the registry of components and recipes that the plugins declared."""

    def __init__(self, plugin_files: Sequence[str | Path] = (), *, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("LSVR_TRACE_PLUGINS") == "1":
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[lsvr-plugins] {msg}"))
            self.pm.enable_tracing()
        self.records: dict[str, PluginRecord] = {}
        self._components: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}
        self._recipes: dict[str, RecipeSpec] = {}
        self._converters: dict[str, ConverterSpec] = {}
        self.conflicts: list[str] = []  # one message per name registered twice
        self._target_fields: dict[str, TargetFieldSpec] = {}
        disabled = _disabled_names()
        core_version = _dist_version("lsvr-core")
        for module_name, name in BUILTIN_PLUGINS:
            self._register_module(name, "lsvr-core", core_version, "builtin",
                                  lambda m=module_name: importlib.import_module(m))
        if entry_points:
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = ep.dist.name if ep.dist is not None else "?"
                version = ep.dist.version if ep.dist is not None else "?"
                if ep.name in disabled:
                    self.records[ep.name] = PluginRecord(ep.name, dist, version, "entry point", status="disabled")
                    continue
                self._register_module(ep.name, dist, version, "entry point", ep.load)
        for path in plugin_files:
            path = Path(path)
            name = path.stem
            if name in disabled:
                self.records[name] = PluginRecord(name, "(file)", "", str(path), status="disabled")
                continue
            self._register_module(name, "(file)", "", str(path), lambda p=path: _import_file(p))
        self.pm.check_pending()
        self._collect()

    # --- loading -------------------------------------------------------------------------------------

    def _register_module(self, name: str, dist: str, version: str, source: str, loader: Any) -> None:
        record = PluginRecord(name, dist, version, source)
        self.records[name] = record
        if self.pm.has_plugin(name):
            record.status, record.error = "failed", f"a plugin named {name!r} is already registered"
            return
        try:
            self.pm.register(loader(), name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # a broken plugin (even one calling sys.exit) must not hide the others
            record.status, record.error = "failed", _format_import_error(err)

    def _hook_results(self, hook_name: str) -> Iterator[tuple[PluginRecord, list[Any]]]:
        """``(record, returned records)`` per implementation of ``hook_name``; a hook that raises marks its
        plugin failed (with the error) and is skipped."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            record = self.records[impl.plugin_name]
            try:
                items = list(impl.function() or [])
            except KeyboardInterrupt:
                raise
            except BaseException as err:
                record.status, record.error = "failed", f"{hook_name}(): {_format_import_error(err)}"
                continue
            yield record, items

    def _add_named(self, store: dict[str, Any], key: str, item: Any, record: PluginRecord, what: str) -> None:
        """Register ``item`` under ``key``; a second registration is a conflict (the first one stays)."""
        other = store.get(key)
        if other is not None:
            self._conflict(record, f"{what} {key!r}", other, item)
            return
        store[key] = item

    def _collect(self) -> None:
        for kind, hook_name in _REGISTRATION_HOOKS.items():
            for record, specs in self._hook_results(hook_name):
                for spec in specs:
                    self._add_component(kind, spec, record)
        for record, recipes in self._hook_results("lsvr_recipes"):
            for recipe in cast(list[RecipeSpec], recipes):
                recipe = _with_origin(recipe, record)
                self._add_named(self._recipes, recipe.ref, recipe, record, "recipe")
        for record, converters in self._hook_results("lsvr_weight_converters"):
            for conv in cast(list[ConverterSpec], converters):
                conv = _with_origin(conv, record)
                self._add_named(self._converters, conv.name, conv, record, "weight converter")
        self._collect_target_fields()

    def _collect_target_fields(self) -> None:
        for record, specs in self._hook_results("lsvr_target_fields"):
            for spec in cast(list[TargetFieldSpec], specs):
                spec = _with_origin(spec, record)
                other = self._target_fields.get(spec.name)
                if other is not None:
                    raise PluginError(
                        f"target field {spec.name!r} is declared twice: by {other.distribution} (plugin "
                        f"{other.plugin!r}) and by {spec.distribution} (plugin {spec.plugin!r})"
                    )
                self._target_fields[spec.name] = spec

    def _add_component(self, kind: str, spec: ComponentSpec, record: PluginRecord) -> None:
        if not isinstance(spec, ComponentSpec) or spec.kind != kind:
            what = f"{spec.kind} {spec.name!r}" if isinstance(spec, ComponentSpec) else f"a {type(spec).__name__}"
            _fail(record, f"returned {what} from the {kind} hook (expected {kind} ComponentSpec records)")
            return
        spec = _with_origin(spec, record)
        other = self._components[kind].get(spec.name)
        if other is not None:
            self._conflict(record, f"{kind} {spec.name!r}", other, spec)
            return
        self._components[kind][spec.name] = spec
        record.components.setdefault(kind, []).append(spec.name)

    def _conflict(self, record: PluginRecord, what: str, other: Any, new: Any) -> None:
        """A second registration of ``what``: the first one stays, the later plugin is marked failed."""
        message = (f"{what} is registered twice: by {other.distribution} (plugin {other.plugin!r}) and by "
                   f"{new.distribution} (plugin {new.plugin!r}); uninstall one or disable it with LSVR_DISABLE_PLUGINS")
        self.conflicts.append(message)
        _fail(record, message)

    # --- queries -------------------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        """The pluggy hook relay, e.g. ``manager.hook.lsvr_run_start(run=info)``."""
        return self.pm.hook

    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status == "failed"]

    def raise_for_failures(self) -> None:
        """Raise :class:`PluginError` naming every plugin that failed to load."""
        failed = self.failures()
        if failed:
            lines = [f"  {r.name} ({r.distribution} {r.version}): {r.error}" for r in failed]
            raise PluginError(
                "some plugins failed to load; fix or uninstall them, or skip them with "
                "LSVR_DISABLE_PLUGINS=" + ",".join(r.name for r in failed) + ":\n" + "\n".join(lines)
            )

    def components(self, kind: str | None = None) -> list[ComponentSpec]:
        kinds = [kind] if kind else list(KINDS)
        return [spec for k in kinds for spec in sorted(self._components[k].values(), key=lambda s: s.name)]

    def get(self, kind: str, name: str) -> ComponentSpec:
        """Return the spec of ``kind`` ``name``; the error lists the valid names."""
        try:
            return self._components[kind][name]
        except KeyError:
            valid = ", ".join(sorted(self._components.get(kind, {}))) or "none registered"
            raise PluginError(f"unknown {kind} {name!r}; valid: {valid}") from None

    def build(self, kind: str, cfg: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Build the component selected by ``cfg.type`` with the kind's factory contract; the factory receives
        this manager as ``registry`` (see :mod:`lsvr_core.specs`).

        Raises:
            PluginError: the factory cannot be imported (one line naming the component, plugin and cause).
        """
        spec = self.get(kind, cfg.type)
        _import_factory(spec)
        return spec.build(cfg, *args, registry=self, **kwargs)

    def recipes(self) -> list[RecipeSpec]:
        return sorted(self._recipes.values(), key=lambda r: r.ref)

    def recipe(self, ref: str) -> RecipeSpec:
        try:
            return self._recipes[ref]
        except KeyError:
            valid = ", ".join(sorted(self._recipes)) or "none registered"
            raise PluginError(f"unknown recipe {ref!r}; valid: {valid}") from None

    def converters(self) -> list[ConverterSpec]:
        """Registered weight converters, sorted by format name."""
        return sorted(self._converters.values(), key=lambda c: c.name)

    def converter(self, name: str) -> ConverterSpec:
        """Return the converter for format ``name``; the error lists the valid formats."""
        try:
            return self._converters[name]
        except KeyError:
            valid = ", ".join(sorted(self._converters)) or "none registered"
            raise PluginError(f"unknown weight format {name!r}; valid: {valid}") from None

    def target_fields(self) -> dict[str, TargetFieldSpec]:
        """Declared per-instance target fields (``lsvr_target_fields``), name -> spec."""
        return dict(sorted(self._target_fields.items()))

    def default_recipe(self) -> RecipeSpec | None:
        """The recipe a bare ``lsvr run`` uses: the highest ``default_priority`` > 0."""
        candidates = [r for r in self._recipes.values() if r.default_priority > 0]
        return max(candidates, key=lambda r: (r.default_priority, r.ref)) if candidates else None

    def distributions(self) -> dict[str, str]:
        """Distribution -> version of every loaded plugin (for ``plugins.json`` in a work dir)."""
        return {r.distribution: r.version for r in self.records.values() if r.status == "ok"}


def _fail(record: PluginRecord, message: str) -> None:
    """Mark ``record`` failed, keeping earlier errors (joined with '; ')."""
    record.status = "failed"
    record.error = f"{record.error}; {message}" if record.error else message


def _import_factory(spec: ComponentSpec) -> None:
    try:
        spec.load()
    except (ImportError, AttributeError) as err:
        raise PluginError(f"{spec.kind} {spec.name!r} of plugin {spec.plugin!r} ({spec.distribution}): cannot import "
                          f"its factory {spec.factory!r}: {type(err).__name__}: {err}") from None


def _with_origin(spec: Any, record: PluginRecord) -> Any:
    from dataclasses import replace

    return replace(spec, plugin=record.name, distribution=record.distribution)


def _dist_version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"plugin file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"lsvr_user_plugin_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_MANAGER: PluginManager | None = None


def get_plugin_manager(plugin_files: Iterable[str | Path] = (), *, reload: bool = False) -> PluginManager:
    """The process-wide plugin manager, created on first use (``reload=True`` rebuilds it)."""
    global _MANAGER
    files = tuple(plugin_files)
    if _MANAGER is None or reload or files:
        _MANAGER = PluginManager(files)
    return _MANAGER
