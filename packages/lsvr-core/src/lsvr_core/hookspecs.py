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

Compatible slots (interfaces). A head calls its nested assigners and losses with a fixed signature, named by
an *interface*. A component declares the interfaces it implements in
``ComponentSpec(..., implements=("classification_loss", ...))``; a config declares the interface each nested
slot calls with :class:`lsvr_core.api.Slot`::

    class MyHeadConfig(HeadConfig):
        assigner: Annotated[AssignerConfig, Slot("anchor_assigner")] = MyAssignerConfig()
        loss_cls: Annotated[LossConfig, Slot("classification_loss")] = FocalLossConfig()
        loss_iou: Annotated[LossConfig, Slot("box_loss")] | None = None

The config resolver offers in such a slot only the registered components that implement its interface, so
``lsvr validate``, ``lsvr schema``, ``lsvr config show`` and ``lsvr components`` agree; any other ``type`` is
a config error (exit 2) naming the dotted path, the value and the types that fit. A slot annotated with the
bare slot base (``LossConfig``) accepts every registered component of that kind. A method that calls a new
signature defines a new interface name (document it next to its head config and here when it is shared).

Standard interfaces (pixels of the padded input frame; boxes xyxy; ``weight`` and ``avg_factor`` default to
None; losses return a scalar tensor):

``point_assigner`` (lsnet ``centroid``; RepPoints' point assigner)
    ``(points (P, 2) float xy, levels (P,) int64 log2(stride), gt_boxes (G, 4)) -> (P,) int64`` GT index per
    point, -1 for negatives.
``point_box_assigner`` (lsnet ``atss``)
    ``(boxes (P, 4), one predicted box per grid point, levels concatenated; num_level_points list[int];
    gt_boxes (G, 4)) -> (P,) int64`` GT index per point, -1 for negatives.
``anchor_assigner`` (mutualguide ``mutual_guide``, ``iou``)
    ``(anchors (A, 4) cxcywh, pred_boxes (B, A, 4), pred_logits (B, A, C), gt_boxes (B, G, 4),
    gt_labels (B, G) int64, gt_valid (B, G) bool, gt_crowd (B, G) bool) -> Assignment`` (per-anchor
    classification and regression targets, ``lsvr_mutualguide.assigners.Assignment``).
``classification_loss`` (``focal``)
    ``(logits (N, C), labels (N,) int64 with -1 for background, weight=, avg_factor=)``.
``soft_classification_loss`` (``focal``, mutualguide ``varifocal_poly``)
    ``(logits (N, C), targets (N, C) float in [0, 1] (one-hot times a quality such as an IoU), weight=,
    avg_factor=)``.
``box_loss`` (``giou``, mutualguide ``siou``)
    ``(pred (N, 4), target (N, 4), weight (N,)=, avg_factor=)`` on decoded boxes.
``regression_loss`` (``l1``, ``smooth_l1``, mutualguide ``balanced_l1``)
    ``(pred (N, D), target (N, D), weight broadcastable=, avg_factor=)``, element-wise (encoded offsets).
``heatmap_loss`` (centernet ``centernet_focal``)
    ``(logits (B, C, H, W), target (B, C, H, W) float in [0, 1], 1 at object centres (Gaussian peaks),
    avg_factor=)``.
``landmark_loss`` (lsnet ``cross_iou``)
    ``(pred (N, K, 4) (up, down, left, right), target (N, K, 2) offsets (dx, dy), weight (N,)=, avg_factor=,
    *, anchors (N, 2), gt_boxes (N, 4), visibility (N, K)=None)``, in normalised units (LSNet spec §4).

Lifecycle hooks are called by the engine on every process; act only when ``run.is_main_process``.
"""

from __future__ import annotations

import argparse
from typing import Any

import pluggy

from lsvr_core.fields import TargetFieldSpec
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
def lsvr_target_fields() -> list[TargetFieldSpec]:
    """Per-instance target fields this plugin adds beyond what every task shares.

    Core's :class:`~lsvr_core.structures.Targets` and :class:`~lsvr_core.structures.Predictions` hold boxes,
    labels, crowd flags, masks / polygons, keypoints and image metadata. Anything method specific (LSNet's
    ``extreme_points`` / ``contours``, VOC's ``difficult``, a CenterNet centre) is declared here with a
    :class:`~lsvr_core.fields.TargetFieldSpec` and travels in ``Targets.extras`` / ``Predictions.extras``
    (:class:`~lsvr_core.field_geometry.ExtraFields`: ``targets.extra("name")`` returns the tensor or raises a
    :class:`~lsvr_core.errors.DataError` naming the image and the fields present).

    The spec's ``kind`` tells every geometric transform what to do with the values, so datasets, the collate,
    ``Predictions.to_original`` and the flip / resize / crop steps of lsvr-data handle a new field without
    knowing it:

    - ``points`` (N, K, 2|3): scaled and translated like pixels; a horizontal flip mirrors x -> W - x and then
      reorders the K points by ``flip_perm`` (left/right swap, exactly as COCO keypoints); a 3rd channel is a
      visibility flag (unlabelled points stay at (0, 0); points leaving a crop become unlabelled).
    - ``boxes`` (N, 4) xyxy: corners as points, x1/x2 swapped by a flip, clamped to a crop.
    - ``polygons``: per instance a list of (P, 2) vertex tensors, every vertex as a point.
    - ``scalar`` (N,) or (N, ...): geometry leaves it alone; instance selection (crowd filtering, crops that
      drop instances) applies to every kind.

    A field is filled either by the dataset that reads it (lsvr-data's VOC reader fills ``difficult``) or by
    the spec's ``derive`` function ``(original-frame Targets) -> (N, ...) tensor``, which a dataset calls for
    each name in its config's ``extra_fields`` before transforming. Naming an undeclared field there is a
    config error listing the declared fields. Two plugins declaring one name is an error naming both.
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
