"""The LSNet head (spec §2): shared towers, stage-1 landmarks, pyramid deformable sampling, refine, classify."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lsvr_core.api import Batch, ConfigError, Predictions, Registry, ShapeSpec
from lsvr_lsnet.branches import LandmarkBranch
from lsvr_lsnet.config import CrossIoULossConfig, LSNetHeadConfig
from lsvr_lsnet.criterion import HeadOutputs, LSNetCriterion
from lsvr_lsnet.layouts import TaskLayout, task_layout
from lsvr_lsnet.postprocess import LSNetPostprocessor
from lsvr_lsnet.towers import PyramidFusion, normal_init, prior_bias, tower


class LSNetHead(nn.Module):
    """LSNet head shared over the FPN levels ``level_names``.

    ``forward(features, batch)`` (training) returns ``{loss_cls, loss_pts_init, loss_pts_refine}`` (+ the box
    branch's ``loss_box_init``/``loss_box_refine`` for pose_bbox); ``predict(features, batch)`` returns one
    input-frame :class:`~lsvr_core.structures.Predictions` per image (§6).

    Args:
        layout: the task's branches (:mod:`lsvr_lsnet.layouts`).
        level_names: feature keys, fine to coarse (e.g. ``p3``..``p7``).
        strides: stride of each level, pixels.
        in_channels: channels of every input level.
        num_classes: foreground classes (sigmoid classifier, no background channel).
        feat_channels, stacked_convs, conv_module, norm_groups, gradient_mul, prior_prob,
        faithful_offset_scaling: see :class:`~lsvr_lsnet.config.LSNetHeadConfig`.
        criterion: the training targets and losses.
        postprocessor: the inference decoder.
    Source: LSNet spec §2.2 (layers and initialisation) and §2.3 (forward pass).
    """

    def __init__(self, layout: TaskLayout, level_names: tuple[str, ...], strides: list[int], in_channels: int,
                 num_classes: int, feat_channels: int, stacked_convs: int, conv_module: str, norm_groups: int,
                 gradient_mul: float, prior_prob: float, faithful_offset_scaling: bool, criterion: LSNetCriterion,
                 postprocessor: LSNetPostprocessor) -> None:
        super().__init__()
        self.layout, self.level_names, self.strides = layout, level_names, strides
        self.gradient_mul = gradient_mul
        self.cls_tower = tower(in_channels, feat_channels, stacked_convs, conv_module, norm_groups)
        self.cls_fusion = PyramidFusion(feat_channels, norm_groups, faithful_offset_scaling)
        self.cls_out = nn.Conv2d(feat_channels, num_classes, 1)
        normal_init(self.cls_out, bias=prior_bias(prior_prob))
        self.branches = nn.ModuleDict({
            b.name: LandmarkBranch(b, in_channels, feat_channels, stacked_convs, conv_module, norm_groups,
                                   faithful_offset_scaling)
            for b in layout.branches
        })
        self.criterion = criterion
        self.postprocessor = postprocessor

    def forward_levels(self, features: dict[str, Tensor]) -> HeadOutputs:
        """Run both stages on every level.

        Args:
            features: ``{level: (N, C, H_l, W_l)}`` containing ``level_names``.
        Returns:
            :class:`~lsvr_lsnet.criterion.HeadOutputs` (logits, init and refined cross vectors per level).
        """
        xs = [features[name] for name in self.level_names]
        cls_feats = [self.cls_tower(x) for x in xs]
        feats: dict[str, list[Tensor]] = {}
        init: dict[str, list[Tensor]] = {}
        offsets: dict[str, list[Tensor]] = {}
        for name, branch in self.branches.items():
            per_level = [branch.stage1(x, self.gradient_mul) for x in xs]
            feats[name] = [f for f, _, _ in per_level]
            init[name] = [s for _, s, _ in per_level]
            offsets[name] = [o for _, _, o in per_level]
        levels = range(len(xs))
        cls_offsets = offsets[self.layout.cls]
        cls = [self.cls_out(self.cls_fusion(cls_feats, lv, cls_offsets[lv])) for lv in levels]
        refine = {name: [branch.stage2(feats[name], lv, offsets[name][lv], init[name][lv]) for lv in levels]
                  for name, branch in self.branches.items()}
        return HeadOutputs(cls, init, refine)

    def forward(self, features: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return self.criterion(self.forward_levels(features), batch, self.strides)

    def predict(self, features: dict[str, Tensor], batch: Batch) -> list[Predictions]:
        return self.postprocessor(self.forward_levels(features), batch, self.strides)

    # --- export (lsvr export): raw outputs in the graph, decoding in Python ------------------------------

    def export_outputs(self, features: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """The raw head outputs as a flat tuple (what ``lsvr export --no-postprocess`` puts in the graph).

        Order: ``cls`` per level, then for each branch (sorted by name) its stage-1 and stage-2 cross vectors
        per level; shapes as in :class:`~lsvr_lsnet.criterion.HeadOutputs`. :meth:`decode_outputs` inverts it.
        """
        out = self.forward_levels(features)
        flat = list(out.cls)
        for name in sorted(out.init):
            flat += list(out.init[name]) + list(out.refine[name])
        return tuple(flat)

    def _unflatten(self, outputs: tuple[Tensor, ...]) -> HeadOutputs:
        levels, names = len(self.strides), sorted(self.branches)
        if len(outputs) != levels * (1 + 2 * len(names)):
            raise ValueError(f"lsnet head: expected {levels * (1 + 2 * len(names))} raw outputs "
                             f"({levels} levels, branches {names}), got {len(outputs)}")
        cls = list(outputs[:levels])
        init, refine = {}, {}
        for i, name in enumerate(names):
            start = levels * (1 + 2 * i)
            init[name] = list(outputs[start : start + levels])
            refine[name] = list(outputs[start + levels : start + 2 * levels])
        return HeadOutputs(cls, init, refine)

    def decode_outputs(self, outputs: tuple[Tensor, ...], batch: Batch) -> list[Predictions]:
        """Input-frame predictions from :meth:`export_outputs`' tuple (same decoding and NMS as :meth:`predict`).

        Raises:
            ValueError: the tuple does not hold ``levels * (1 + 2 * branches)`` tensors.
        """
        return self.postprocessor(self._unflatten(outputs), batch, self.strides)

    def export_postprocess(self, outputs: tuple[Tensor, ...], image_size: Tensor,
                           scale_factor: Tensor, input_size: tuple[int, int]) -> dict[str, Tensor]:
        """Traceable decoding of one image's :meth:`export_outputs` (``lsvr export --postprocess``); see
        :func:`lsvr_lsnet.export.decode_in_graph` for the outputs and when they equal :meth:`decode_outputs`."""
        from lsvr_lsnet.export import decode_in_graph

        return decode_in_graph(self.postprocessor, self._unflatten(outputs), self.strides, image_size, scale_factor)


def _landmark_loss(manager: Any, cfg: Any, loss_type: str) -> nn.Module:
    """Build a landmark loss, filling a cross_iou ``loss_type`` left None with the branch's type (§4.4)."""
    if isinstance(cfg, CrossIoULossConfig) and cfg.loss_type is None:
        cfg = cfg.model_copy(update={"loss_type": loss_type})
    return manager.build("loss", cfg)


def build_lsnet_head(cfg: LSNetHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int,
                     task: str, *, registry: Registry | None = None) -> LSNetHead:
    """Factory of the ``lsnet`` head: ``factory(cfg, input_shape, num_classes, task, *, registry)``; the
    assigners and losses are built through ``registry``.

    Raises:
        ConfigError: unsupported task, a level missing from ``input_shape``, unequal level channels,
            ``feat_channels`` not divisible by ``norm_groups``, or no ``registry``.
    """
    layout = task_layout(task)
    missing = [lv for lv in cfg.in_levels if lv not in input_shape]
    if missing:
        raise ConfigError(f"model.head.in_levels {list(cfg.in_levels)}: {missing} not produced by the neck, which "
                          f"outputs {list(input_shape)}")
    channels = {input_shape[lv].channels for lv in cfg.in_levels}
    if len(channels) != 1:
        raise ConfigError(f"model.head: the lsnet head is shared over levels, but in_levels have channels {channels}")
    if cfg.feat_channels % cfg.norm_groups:
        raise ConfigError(f"model.head.feat_channels={cfg.feat_channels} is not divisible by "
                          f"norm_groups={cfg.norm_groups}")
    if registry is None:
        raise ConfigError("model.head: the lsnet head builds its assigners and losses through registry= (the "
                          "plugin manager building it); none was given")
    manager = registry
    pose = task.startswith("pose")
    main = layout.branch(layout.main)
    losses = {"loss_init": _landmark_loss(manager, cfg.loss_init, main.loss_type),
              "loss_refine": _landmark_loss(manager, cfg.loss_refine, main.loss_type)}
    if layout.box != layout.main:
        box_type = layout.branch(layout.box).loss_type
        losses["loss_box_init"] = _landmark_loss(manager, cfg.loss_box_init, box_type)
        losses["loss_box_refine"] = _landmark_loss(manager, cfg.loss_box_refine, box_type)
    criterion = LSNetCriterion(layout, manager.build("assigner", cfg.assigner_init),
                               manager.build("assigner", cfg.assigner_refine), manager.build("loss", cfg.loss_cls),
                               losses, cfg.point_base_scale, cfg.pad_divisor)
    postprocessor = LSNetPostprocessor(layout, cfg.nms_pre or (100 if pose else 1000), cfg.score_thr, cfg.nms_iou,
                                       cfg.max_per_img or (20 if pose else 100), cfg.pose_min_area, cfg.pad_divisor)
    strides = [input_shape[lv].stride for lv in cfg.in_levels]
    return LSNetHead(layout, tuple(cfg.in_levels), strides, next(iter(channels)), num_classes, cfg.feat_channels,
                     cfg.stacked_convs, cfg.conv_module, cfg.norm_groups, cfg.gradient_mul, cfg.prior_prob,
                     cfg.faithful_offset_scaling, criterion, postprocessor)
