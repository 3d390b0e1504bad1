"""Spec records that plugins return from the registration hooks, and the config base classes.

A plugin describes each component with a frozen :class:`ComponentSpec`: the name used as ``type:`` in YAML,
a pydantic config model, a lazily imported factory (``"module.path:callable"``), a one-line summary and the
tasks it supports. Nothing here imports torch; a factory's module is imported only when the component is
built.

Config models subclass one of the slot bases below (:class:`BackboneConfig`, :class:`HeadConfig`, ...) and
set ``type: Literal["name"] = "name"``. A field annotated with a slot base (for example a head's
``loss_cls: LossConfig``) becomes, when the run config is built, a discriminated union over every
registered config of that kind (see :mod:`lsvr_core.config.resolve`). A field annotated
``Annotated[LossConfig, Slot("classification_loss")]`` offers only the components whose spec lists that
interface in ``implements`` (standard interface names: :mod:`lsvr_core.hookspecs`).

Factory contracts (the argument lists the engine uses; shapes in :mod:`lsvr_core.contracts`). Every factory
receives the registry that builds it as the keyword-only argument ``registry`` (a
:class:`~lsvr_core.contracts.Registry`: the plugin manager, with ``registry.build(kind, cfg, *args, **kw)`` and
``registry.get(kind, name)``) and builds its nested components (assigners, losses, layers) through it, never
through a process-wide global. Declare it as ``*, registry=None`` when the factory needs no nested component.

========== =========================================================================================
kind       factory call
========== =========================================================================================
backbone   ``factory(cfg, *, registry) -> Backbone``
neck       ``factory(cfg, input_shape: dict[str, ShapeSpec], *, registry) -> Neck``
head       ``factory(cfg, input_shape: dict[str, ShapeSpec], num_classes: int, task: str, *, registry) -> Head``
assigner   ``factory(cfg, *, registry) -> callable`` (call signature: the interface it implements)
loss       ``factory(cfg, *, registry) -> torch.nn.Module`` (call signature: the interface it implements)
dataset    ``factory(cfg, *, root: Path, train: bool, task: str, registry) -> Dataset`` (``train``: augment)
evaluator  ``factory(cfg, *, dataset, task: str, registry) -> Evaluator``
layer      ``factory(*, registry, **kwargs) -> torch.nn.Module`` (building blocks such as a deformable conv)
========== =========================================================================================

A dataset factory may also accept ``annotations: bool = True``; ``lsvr predict`` passes ``annotations=False``
when the checkpoint holds the class names: the factory then reads no annotation file and returns a dataset
whose ``prepare(image)`` applies the test-time pipeline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal["backbone", "neck", "head", "assigner", "loss", "dataset", "evaluator", "layer"]
KINDS: tuple[str, ...] = ("backbone", "neck", "head", "assigner", "loss", "dataset", "evaluator", "layer")


class ComponentConfig(BaseModel):
    """Base of every component config: unknown keys are rejected, ``type`` selects the component."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    type: str


def _declared_levels(cfg: ComponentConfig) -> tuple[str, ...] | None:
    levels = getattr(cfg, "in_levels", None)
    return tuple(levels) if levels else None


class BackboneConfig(ComponentConfig):
    """Slot base for backbones (``model.backbone``).

    The declaration methods below (here and on the other slot bases) are torch-free and called through the
    class (``type(cfg).output_strides(cfg)``), so a config field of the same name does not hide them.

    Override :meth:`output_strides` so that ``lsvr validate`` can check the level names of the neck and head.
    """

    def output_strides(self) -> dict[str, int] | None:
        """``{level: stride in pixels}`` of the features this backbone returns, known without building it
        (torch-free); None (the default) when unknown, which skips the level checks."""
        return None


class NeckConfig(ComponentConfig):
    """Slot base for necks (``model.neck``).

    Level declarations for ``lsvr validate``: :meth:`input_level_names` (default: an ``in_levels`` field) and
    :meth:`output_strides`.
    """

    def input_level_names(self) -> tuple[str, ...] | None:
        """The backbone levels this neck reads (default: the ``in_levels`` field; None when there is none)."""
        return _declared_levels(self)

    def output_strides(self, inputs: dict[str, int]) -> dict[str, int] | None:
        """``{level: stride}`` this neck returns given the backbone's ``{level: stride}`` (torch-free); None
        (the default) when unknown, which skips the head's level check."""
        return None


class HeadConfig(ComponentConfig):
    """Slot base for heads (``model.head``).

    ``lsvr validate`` checks :meth:`input_level_names` (default: an ``in_levels`` field) against the neck's outputs.
    A ``pad_divisor`` field (the padding a head's location grid assumes) is derived from ``data.size_divisor``
    when left unset and must equal it when set (:mod:`lsvr_core.config.checks`).
    """

    def input_level_names(self) -> tuple[str, ...] | None:
        """The neck levels this head reads (default: the ``in_levels`` field; None: all, unchecked)."""
        return _declared_levels(self)


class AssignerConfig(ComponentConfig):
    """Slot base for assigners (usually nested in a head config)."""


class LossConfig(ComponentConfig):
    """Slot base for losses (usually nested in a head config)."""


class DatasetConfig(ComponentConfig):
    """Slot base for datasets (``data.train``, ``data.val``)."""

    def known_num_classes(self, task: str) -> int | None:
        """The number of classes this dataset labels for ``task`` when known without reading it (torch-free);
        None (the default) when unknown. ``lsvr validate`` checks ``model.num_classes`` against it."""
        return None


class EvaluatorConfig(ComponentConfig):
    """Slot base for evaluators (``eval.evaluator``)."""


class LayerConfig(ComponentConfig):
    """Slot base for layers (rarely configured directly)."""


@dataclass(frozen=True)
class Slot:
    """The interface a nested component slot calls, e.g. ``Annotated[LossConfig, Slot("classification_loss")]``.

    The config resolver offers in the slot only the registered components whose :class:`ComponentSpec` lists
    ``interface`` in ``implements``; any other ``type`` is a config error naming the types that fit. Standard
    interface names and their call signatures are documented in :mod:`lsvr_core.hookspecs`.
    """

    interface: str


SLOT_BASES: dict[str, type[ComponentConfig]] = {
    "backbone": BackboneConfig,
    "neck": NeckConfig,
    "head": HeadConfig,
    "assigner": AssignerConfig,
    "loss": LossConfig,
    "dataset": DatasetConfig,
    "evaluator": EvaluatorConfig,
    "layer": LayerConfig,
}


def load_object(path: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute.

    Raises:
        ImportError: the module cannot be imported (the original error is chained).
        AttributeError: the module has no such attribute.
    """
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"factory path {path!r} must look like 'package.module:callable'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise AttributeError(f"module {module_name!r} has no attribute {attr!r} (factory {path!r})") from err


@dataclass(frozen=True)
class ComponentSpec:
    """One registered component.

    Attributes:
        kind: one of :data:`KINDS`.
        name: the YAML ``type`` value; unique per kind across all installed plugins.
        config: pydantic model subclassing the slot base of ``kind`` with ``type: Literal[name]``.
        factory: ``"module:callable"``, imported on first use only.
        summary: one line for ``lsvr components``.
        tasks: tasks the component supports (``bbox``, ``segm``, ``pose_bbox``, ``pose_kbox``, ...); empty
            means task-agnostic.
        implements: interfaces the component implements (``point_assigner``, ``classification_loss``, ...;
            see :mod:`lsvr_core.hookspecs`): the :class:`Slot` s it may fill. Empty: it fits only slots
            annotated with the bare slot base.
        plugin: name of the plugin that registered it (filled in by the plugin manager).
        distribution: distribution (pip package) of that plugin (filled in by the plugin manager).
    """

    kind: str
    name: str
    config: type[ComponentConfig] | None
    factory: str
    summary: str
    tasks: tuple[str, ...] = ()
    implements: tuple[str, ...] = ()
    plugin: str = ""
    distribution: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"component {self.name!r}: unknown kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")
        if self.config is not None:
            base = SLOT_BASES[self.kind]
            if not issubclass(self.config, base):
                raise TypeError(f"{self.kind} {self.name!r}: config {self.config.__name__} must subclass "
                                f"{base.__name__}")
            type_field = self.config.model_fields.get("type")
            if type_field is None or type_field.default != self.name:
                raise TypeError(
                    f"{self.kind} {self.name!r}: config {self.config.__name__} needs "
                    f"`type: Literal[{self.name!r}] = {self.name!r}`"
                )

    def load(self) -> Callable[..., Any]:
        """Import and return the factory callable."""
        return load_object(self.factory)

    def build(self, cfg: Any = None, /, *args: Any, registry: Any, **kwargs: Any) -> Any:
        """Call the factory: ``factory(cfg, *args, registry=registry, **kwargs)`` (``cfg`` omitted for
        config-less layers). ``registry`` is the :class:`~lsvr_core.contracts.Registry` the factory builds its
        nested components with (usually the plugin manager calling this)."""
        factory = self.load()
        if self.config is None and cfg is None:
            return factory(*args, registry=registry, **kwargs)
        return factory(cfg, *args, registry=registry, **kwargs)


@dataclass(frozen=True)
class RecipeSpec:
    """A shipped config file, addressable as ``namespace:name`` (e.g. ``lsnet:bbox_r50_1x_coco``).

    Attributes:
        namespace: short plugin name used before the colon.
        name: recipe name, the file stem.
        package: importable package that holds the YAML as package data.
        resource: file name inside ``package``.
        summary: one line for ``lsvr recipes``.
        default_priority: > 0 marks a candidate for a bare ``lsvr run``; the highest wins.
    """

    namespace: str
    name: str
    package: str
    resource: str
    summary: str = ""
    default_priority: int = 0
    plugin: str = ""
    distribution: str = ""

    @property
    def ref(self) -> str:
        return f"{self.namespace}:{self.name}"

    def path(self) -> Path:
        """Filesystem path of the YAML file (package data; importing ``package`` must not import torch)."""
        from importlib.resources import files

        return Path(str(files(self.package) / self.resource))


def recipes_from_dir(namespace: str, package: str, summaries: dict[str, str],
                     defaults: dict[str, int] | None = None) -> list[RecipeSpec]:
    """Build :class:`RecipeSpec` records for every ``*.yaml`` shipped in ``package``.

    Args:
        namespace: the prefix used in ``namespace:recipe`` references.
        package: importable package holding the YAML files.
        summaries: optional one-line summary per recipe name.
        defaults: optional ``default_priority`` per recipe name.
    """
    from importlib.resources import files

    defaults = defaults or {}
    out = []
    for entry in sorted(files(package).iterdir(), key=lambda p: p.name):
        if entry.name.endswith((".yaml", ".yml")):
            stem = entry.name.rsplit(".", 1)[0]
            out.append(
                RecipeSpec(namespace, stem, package, entry.name, summaries.get(stem, ""), defaults.get(stem, 0))
            )
    return out


@dataclass(frozen=True)
class ConverterSpec:
    """A weight converter: maps a reference implementation's released checkpoint to lsvr's parameter names.

    ``lsvr convert-weights NAME SRC DST`` loads ``SRC`` (``torch.load(weights_only=True)``; a ``state_dict``,
    ``model`` or ``module`` entry is unwrapped), calls ``factory(state_dict) -> state_dict`` and writes ``DST``
    as an lsvr weights file that ``model.init_from`` accepts.

    The factory must map every key or raise :class:`lsvr_core.errors.ConversionError` listing all unmapped
    and mis-shaped keys (never drop a tensor silently).

    Attributes:
        name: the FORMAT argument, e.g. ``mutualguide-v1``; unique across installed plugins.
        factory: ``"module:callable"`` with signature ``(dict[str, Tensor]) -> dict[str, Tensor]``.
        summary: one line for ``lsvr convert-weights --list`` (which checkpoints, from which repository).
    """

    name: str
    factory: str
    summary: str
    plugin: str = ""
    distribution: str = ""

    def load(self) -> Callable[..., Any]:
        """Import and return the converter callable."""
        return load_object(self.factory)


@dataclass
class RunInfo:
    """What lifecycle hooks receive about the run.

    Attributes:
        config: the validated run config (a pydantic model).
        work_dir: the run's work directory.
        is_main_process: True on rank 0 (loggers should only act there).
        resumed: True when the run continues from a checkpoint.
        extras: free-form values a logger may keep between calls (e.g. its run handle).
    """

    config: Any
    work_dir: Path
    is_main_process: bool = True
    resumed: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
