"""The LSNet head with corner point verification, ``LSCPVHead`` (bbox task; LSNet spec §5, layers §2.2)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_core.api import Batch, ConfigError, Predictions, Registry, ShapeSpec, Targets
from lsvr_lsnet.branches import _BASE_GRID, sampling_points
from lsvr_lsnet.config import CrossIoULossConfig, LSCPVHeadConfig
from lsvr_lsnet.cpv.corner_pool import ConvGNReLU, CornerPoolBlock
from lsvr_lsnet.cpv.criterion import CornerCriterion, CornerOutputs
from lsvr_lsnet.cpv.snap import snap_corners
from lsvr_lsnet.criterion import HeadOutputs, LSNetCriterion
from lsvr_lsnet.layouts import BBOX, task_layout
from lsvr_lsnet.postprocess import LSNetPostprocessor
from lsvr_lsnet.towers import PyramidFusion, normal_init, prior_bias, tower

CORNER_CHANNELS = 6  # tl score, br score, tl offset (x, y), br offset (x, y)


class LSCPVHead(nn.Module):
    """LSNet bbox head with CPV, shared over the FPN levels ``level_names``.

    Per level (stage 1): cls tower ``c`` and box tower ``b`` (each ``stacked_convs`` DCN/plain + GN + ReLU); a
    shared block ``s`` on ``b``; semantic logits ``sem_out(s)`` and embedding ``e = ConvGNReLU_1x1(s)`` added to
    ``c``, ``b`` and ``s``; top-left / bottom-right corner-pool blocks on ``s + e`` with 3x3 heatmap (1) and offset
    (2) outputs; the stage-1 landmarks from ``b + e`` (as ``LSHead``). The 6 raw corner outputs are concatenated
    to the cls and box features (C + 6 channels) that the pyramid samplers (stage 2, shared offsets) read.

    ``forward(features, batch)`` (training) returns ``{loss_cls, loss_pts_init, loss_pts_refine, loss_heatmap,
    loss_offset, loss_sem}``; ``predict(features, batch)`` returns input-frame predictions whose boxes from levels
    >= 1 have their corners snapped to the corner heatmaps (when ``snap``).

    Args:
        level_names, strides, in_channels, num_classes, feat_channels, stacked_convs, conv_module, norm_groups,
        gradient_mul, prior_prob, faithful_offset_scaling: as :class:`~lsvr_lsnet.head.LSNetHead`.
        shared_stacked_convs, corner_dim, corner_first_kernel, corner_kernel: see
            :class:`~lsvr_lsnet.config.LSCPVHeadConfig`.
        criterion: the LSNet targets and losses (bbox layout).
        corner_criterion: the corner and semantic losses.
        postprocessor: the LSNet decoder.
        snap: snap corners at inference.
    Source: LSNet spec §5 (architecture, init N(0, 0.01) incl. the pyramid convs; reference ``lscpvnet_head.py``).
    """

    def __init__(self, level_names: tuple[str, ...], strides: list[int], in_channels: int, num_classes: int,
                 feat_channels: int, stacked_convs: int, conv_module: str, norm_groups: int, gradient_mul: float,
                 prior_prob: float, faithful_offset_scaling: bool, shared_stacked_convs: int, corner_dim: int,
                 corner_first_kernel: int, corner_kernel: int, criterion: LSNetCriterion,
                 corner_criterion: CornerCriterion, postprocessor: LSNetPostprocessor, snap: bool = True) -> None:
        super().__init__()
        c = feat_channels
        self.level_names, self.strides, self.gradient_mul, self.snap = level_names, strides, gradient_mul, snap
        self.cls_tower = tower(in_channels, c, stacked_convs, conv_module, norm_groups)
        self.bbox_tower = tower(in_channels, c, stacked_convs, conv_module, norm_groups)
        self.shared_tower = tower(c, c, shared_stacked_convs, conv_module, norm_groups)
        self.sem_out = nn.Conv2d(c, num_classes, 1)
        self.sem_embed = ConvGNReLU(c, c, 1, norm_groups)
        self.tl_pool = CornerPoolBlock(c, corner_dim, ("top", "left"), corner_first_kernel, corner_kernel, norm_groups)
        self.br_pool = CornerPoolBlock(c, corner_dim, ("bottom", "right"), corner_first_kernel, corner_kernel,
                                       norm_groups)
        self.tl_score, self.br_score = nn.Conv2d(c, 1, 3, padding=1), nn.Conv2d(c, 1, 3, padding=1)
        self.tl_offset, self.br_offset = nn.Conv2d(c, 2, 3, padding=1), nn.Conv2d(c, 2, 3, padding=1)
        self.init_conv = nn.Conv2d(c, c, 3, padding=1)
        self.init_out = nn.Conv2d(c, BBOX.init_channels, 1)
        fusion_args = dict(in_channels=c + CORNER_CHANNELS, pyramid_init="normal")
        self.bbox_fusion = PyramidFusion(c, norm_groups, faithful_offset_scaling, **fusion_args)
        self.refine_out = nn.Conv2d(c, 4 * BBOX.num_landmarks, 1)
        self.cls_fusion = PyramidFusion(c, norm_groups, faithful_offset_scaling, **fusion_args)
        self.cls_out = nn.Conv2d(c, num_classes, 1)
        bias = prior_bias(prior_prob)
        for conv in (self.sem_out, self.tl_score, self.br_score, self.cls_out):
            normal_init(conv, bias=bias)
        for conv in (self.tl_offset, self.br_offset, self.init_conv, self.init_out, self.refine_out):
            normal_init(conv)
        self.register_buffer("base_grid", torch.tensor(_BASE_GRID, dtype=torch.float32).view(1, 18, 1, 1), False)
        self.criterion, self.corner_criterion, self.postprocessor = criterion, corner_criterion, postprocessor

    def _stage1(self, x: Tensor) -> tuple[Tensor, ...]:
        """One level: (cls feature (N, C+6, H, W), box feature (N, C+6, H, W), S_init (N, 20, H, W),
        DCN offsets (N, 18, H, W), corner scores (N, 2, H, W), corner offsets (N, 4, H, W), semantic logits)."""
        cls_feat, box_feat = self.cls_tower(x), self.bbox_tower(x)
        shared = self.shared_tower(box_feat)
        semantic = self.sem_out(shared)
        embed = self.sem_embed(shared)
        cls_feat, box_feat, corner_feat = cls_feat + embed, box_feat + embed, shared + embed
        tl, br = self.tl_pool(corner_feat), self.br_pool(corner_feat)
        scores = torch.cat([self.tl_score(tl), self.br_score(br)], dim=1)
        offsets = torch.cat([self.tl_offset(tl), self.br_offset(br)], dim=1)
        out = self.init_out(F.relu(self.init_conv(box_feat)))
        k4 = 4 * BBOX.num_landmarks
        s_init = F.softplus(out[:, :k4])
        points = sampling_points(s_init, out[:, k4:], BBOX)
        points = (1 - self.gradient_mul) * points.detach() + self.gradient_mul * points
        corner = torch.cat([scores, offsets], dim=1)  # raw outputs, not detached (§5)
        return (torch.cat([cls_feat, corner], 1), torch.cat([box_feat, corner], 1), s_init,
                points - self.base_grid.to(points.dtype), scores, offsets, semantic)

    def forward_levels(self, features: dict[str, Tensor]) -> tuple[HeadOutputs, CornerOutputs]:
        """Args:
            features: ``{level: (N, C, H_l, W_l)}`` containing ``level_names``.
        Returns:
            the LSNet outputs (logits, init and refined bbox cross vectors) and the CPV outputs per level.
        """
        per_level = [self._stage1(features[name]) for name in self.level_names]
        cls_feats, box_feats, inits, offs, scores, corner_offs, sems = (list(v) for v in zip(*per_level, strict=True))
        levels = range(len(per_level))
        cls = [self.cls_out(self.cls_fusion(cls_feats, lv, offs[lv])) for lv in levels]
        refine = [F.softplus(self.refine_out(self.bbox_fusion(box_feats, lv, offs[lv])) + inits[lv].detach())
                  for lv in levels]
        return HeadOutputs(cls, {"bbox": inits}, {"bbox": refine}), CornerOutputs(scores, corner_offs, sems)

    def forward(self, features: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        out, corners = self.forward_levels(features)
        return {**self.criterion(out, batch, self.strides), **self.corner_criterion(corners, batch, self.strides)}

    def predict(self, features: dict[str, Tensor], batch: Batch) -> list[Predictions]:
        out, corners = self.forward_levels(features)
        if not self.snap:
            return self.postprocessor(out, batch, self.strides)
        starts = torch.tensor([h * w for h, w in out.sizes], device=out.cls[0].device).cumsum(0)

        def refine(boxes: Tensor, point_index: Tensor, i: int, meta: Targets) -> Tensor:
            levels = torch.bucketize(point_index, starts, right=True)
            scores = [s[i].float() for s in corners.scores]
            offsets = [o[i].float() for o in corners.offsets]
            snapped = snap_corners(boxes, levels, scores, offsets, self.strides, tuple(meta.image_size))
            # a snapped top-left corner can pass the bottom-right one; order them, as LSNet does for its boxes
            return torch.cat([torch.minimum(snapped[:, :2], snapped[:, 2:]),
                              torch.maximum(snapped[:, :2], snapped[:, 2:])], dim=1)

        return self.postprocessor(out, batch, self.strides, refine_boxes=refine)


def _build(registry: Any, kind: str, cfg: Any) -> Any:
    return registry.build(kind, cfg)


def build_lscpv_head(cfg: LSCPVHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int, task: str, *,
                     registry: Registry | None = None) -> LSCPVHead:
    """Factory of the ``lscpv`` head: ``factory(cfg, input_shape, num_classes, task, *, registry=None)``.

    Nested components (assigners, losses) are built through ``registry`` (the plugin manager building this head).

    Raises:
        ConfigError: a task other than bbox, a level missing from ``input_shape``, unequal level channels,
            channels not divisible by ``norm_groups``, or no ``registry``.
    """
    if task != "bbox":
        raise ConfigError(f"model.head: the lscpv head (corner point verification) supports task bbox only, "
                          f"got task {task!r}")
    if registry is None:
        raise ConfigError("model.head: the lscpv head builds its assigners and losses through registry= (the "
                          "plugin manager building it); none was given")
    missing = [lv for lv in cfg.in_levels if lv not in input_shape]
    if missing:
        raise ConfigError(f"model.head.in_levels {list(cfg.in_levels)}: {missing} not produced by the neck, which "
                          f"outputs {list(input_shape)}")
    channels = {input_shape[lv].channels for lv in cfg.in_levels}
    if len(channels) != 1:
        raise ConfigError(f"model.head: the lscpv head is shared over levels, but in_levels have channels {channels}")
    for field in ("feat_channels", "corner_dim"):
        if getattr(cfg, field) % cfg.norm_groups:
            raise ConfigError(f"model.head.{field}={getattr(cfg, field)} is not divisible by "
                              f"norm_groups={cfg.norm_groups}")
    layout = task_layout("bbox")

    def landmark_loss(loss_cfg: Any) -> nn.Module:
        if isinstance(loss_cfg, CrossIoULossConfig) and loss_cfg.loss_type is None:
            loss_cfg = loss_cfg.model_copy(update={"loss_type": "bbox"})
        return _build(registry, "loss", loss_cfg)

    landmark_losses = {"loss_init": landmark_loss(cfg.loss_init), "loss_refine": landmark_loss(cfg.loss_refine)}
    criterion = LSNetCriterion(layout, _build(registry, "assigner", cfg.assigner_init),
                               _build(registry, "assigner", cfg.assigner_refine),
                               _build(registry, "loss", cfg.loss_cls), landmark_losses, cfg.point_base_scale,
                               cfg.pad_divisor)
    corner_criterion = CornerCriterion(_build(registry, "assigner", cfg.assigner_heatmap),
                                       _build(registry, "loss", cfg.loss_heatmap),
                                       _build(registry, "loss", cfg.loss_offset),
                                       _build(registry, "loss", cfg.loss_sem), num_classes, cfg.pad_divisor)
    postprocessor = LSNetPostprocessor(layout, cfg.nms_pre or 1000, cfg.score_thr, cfg.nms_iou,
                                       cfg.max_per_img or 100, cfg.pose_min_area, cfg.pad_divisor)
    strides = [input_shape[lv].stride for lv in cfg.in_levels]
    return LSCPVHead(tuple(cfg.in_levels), strides, next(iter(channels)), num_classes, cfg.feat_channels,
                     cfg.stacked_convs, cfg.conv_module, cfg.norm_groups, cfg.gradient_mul, cfg.prior_prob,
                     cfg.faithful_offset_scaling, cfg.shared_stacked_convs, cfg.corner_dim, cfg.corner_first_kernel,
                     cfg.corner_kernel, criterion, corner_criterion, postprocessor, cfg.snap_corners)
