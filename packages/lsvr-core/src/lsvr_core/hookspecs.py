"""The lsvr plugin contract: every hook a plugin may implement (pluggy project name ``lsvr``).

A plugin is a module or object with functions decorated by :data:`hookimpl` and named like the hooks
below. Installed plugins are found through the ``lsvr`` entry-point group::

    [project.entry-points.lsvr]
    myplugin = "my_package.plugin"

Registration hooks return lists of :class:`~lsvr_core.specs.ComponentSpec` (or
:class:`~lsvr_core.specs.RecipeSpec`). They are called once at start-up and must not import torch: put
config models in a torch-free module and point ``factory`` at the module that builds the component.

Factories receive the registry that builds them. Every component factory is called with the keyword-only
argument ``registry`` (a :class:`lsvr_core.api.Registry`: the plugin manager, offering
``registry.build(kind, cfg, *args, **kw)`` and ``registry.get(kind, name)``). A factory builds its nested
components (a head's assigners and losses, a backbone's deformable layers) through it, never through a
process-wide global, so one model comes entirely from one registry. Write factories as::

    def build_my_head(cfg, input_shape, num_classes, task, *, registry=None):
        assigner = registry.build("assigner", cfg.assigner)
        loss_cls = registry.build("loss", cfg.loss_cls)
        ...

The full table of factory signatures is in :mod:`lsvr_core.specs`.

Lifecycle hooks are called by the engine on every process; act only when ``run.is_main_process``.
"""

from __future__ import annotations

import argparse
from typing import Any

import pluggy

from lsvr_core.specs import ComponentSpec, ConverterSpec, RecipeSpec, RunInfo

PROJECT = "lsvr"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration -----------------------------------------------------------------------------------


@hookspec
def lsvr_backbones() -> list[ComponentSpec]:
    """Backbones: ``factory(cfg, *, registry) -> Backbone`` (see :class:`lsvr_core.contracts.Backbone`)."""


@hookspec
def lsvr_necks() -> list[ComponentSpec]:
    """Necks: ``factory(cfg, input_shape, *, registry) -> Neck`` (see :class:`lsvr_core.contracts.Neck`)."""


@hookspec
def lsvr_heads() -> list[ComponentSpec]:
    """Heads: ``factory(cfg, input_shape, num_classes, task, *, registry) -> Head`` (:class:`lsvr_core.contracts.Head`);
    nested assigners and losses are built with ``registry.build(kind, cfg.<slot>)``."""


@hookspec
def lsvr_assigners() -> list[ComponentSpec]:
    """Assigners: ``factory(cfg, *, registry) -> callable``; the call signature is the interface it implements."""


@hookspec
def lsvr_losses() -> list[ComponentSpec]:
    """Losses: ``factory(cfg, *, registry) -> nn.Module``; the call signature is the interface it implements."""


@hookspec
def lsvr_datasets() -> list[ComponentSpec]:
    """Datasets: ``factory(cfg, *, root, train, task, registry) -> Dataset`` (:class:`lsvr_core.api.Dataset`)."""


@hookspec
def lsvr_evaluators() -> list[ComponentSpec]:
    """Evaluators: ``factory(cfg, *, dataset, task, registry) -> Evaluator`` (:class:`lsvr_core.api.Evaluator`)."""


@hookspec
def lsvr_layers() -> list[ComponentSpec]:
    """Reusable layers other plugins may look up by name (e.g. ``dcn_v2``): ``factory(*, registry, **kwargs) ->
    nn.Module``; use them as ``registry.get("layer", name).build(None, registry=registry, **kwargs)``."""


@hookspec
def lsvr_recipes() -> list[RecipeSpec]:
    """Shipped YAML configs, addressable as ``namespace:name`` in ``extends:`` and on the command line."""


@hookspec
def lsvr_weight_converters() -> list[ConverterSpec]:
    """Converters from reference checkpoints to lsvr state dicts, used by ``lsvr convert-weights FORMAT SRC DST``.

    Each :class:`~lsvr_core.specs.ConverterSpec` names a format (e.g. ``mutualguide-v1``) and a lazily imported
    ``(state_dict) -> state_dict`` callable that raises :class:`~lsvr_core.errors.ConversionError` with the full
    list of keys it cannot map.
    """


@hookspec
def lsvr_add_commands(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    """Add sub-commands to the ``lsvr`` CLI.

    Each added parser must set ``func`` via ``set_defaults(func=callable)``; the callable receives the parsed
    ``argparse.Namespace`` and returns an exit code. Keep imports inside the callable.
    """


@hookspec
def lsvr_env_info() -> dict[str, str]:
    """Lines for ``lsvr env`` (bug reports): ``{label: value}``, e.g. ``{"kernel cuda_ops": "triton"}``.

    Called only by ``lsvr env``, so the implementation may import torch; keep each value to one line.
    """


# --- run lifecycle (loggers) ----------------------------------------------------------------------------


@hookspec
def lsvr_run_start(run: RunInfo) -> None:
    """The run starts: config validated, work dir created, model built."""


@hookspec
def lsvr_log_metrics(run: RunInfo, step: int, metrics: dict[str, float]) -> None:
    """Periodic training scalars (losses, lr, throughput) at global iteration ``step``."""


@hookspec
def lsvr_epoch_end(run: RunInfo, epoch: int, iteration: int, metrics: dict[str, float]) -> None:
    """An epoch ended; ``metrics`` holds its evaluation results (``bbox/AP`` ...) when it was evaluated."""


@hookspec
def lsvr_log_images(run: RunInfo, step: int, images: dict[str, Any]) -> None:
    """Drawn predictions: ``images`` maps a caption to a PNG path or an (H, W, 3) uint8 array."""


@hookspec
def lsvr_run_end(run: RunInfo, status: str) -> None:
    """The run ended; ``status`` is ``"completed"``, ``"interrupted"`` or ``"failed"``."""
