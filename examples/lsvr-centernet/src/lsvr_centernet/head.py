"""The CenterNet head: three 3x3-conv -> ReLU -> 1x1 branches on one level (heatmap, size, offset), paper §3-4."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lsvr_centernet.config import CenterNetHeadConfig
from lsvr_centernet.decode import decode
from lsvr_centernet.losses import build_default_loss
from lsvr_centernet.targets import build_targets
from lsvr_core.api import Batch, ConfigError, Predictions, ShapeSpec


def _branch(in_ch: int, mid: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, mid, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(mid, out, 1))


class CenterNetHead(nn.Module):
    """Training: ``forward(features, batch) -> {"loss_heatmap", "loss_size", "loss_offset"}``; inference:
    ``predict(features, batch) -> [Predictions]`` (input frame).

    The level ``cfg.in_level`` (B, C, H, W) at stride s gives heatmap logits (B, num_classes, H, W), sizes
    (B, 2, H, W) and offsets (B, 2, H, W), both in grid cells. Object centres come from the declared target
    field ``cfg.center_field`` (``centernet_centers``, (N, 1, 2) pixels), which the data pipeline moved
    with the image.

    Args:
        cfg: the head config; input_shape: the neck's levels; num_classes: C; task: ``bbox`` only.
        losses: the built ``loss_heatmap``, ``loss_size`` and ``loss_offset`` modules.
    """

    def __init__(self, cfg: CenterNetHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int,
                 losses: dict[str, nn.Module]) -> None:
        super().__init__()
        if cfg.in_level not in input_shape:
            raise ConfigError(f"head centernet: in_level {cfg.in_level!r} is not a neck level "
                              f"({', '.join(input_shape)})")
        spec = input_shape[cfg.in_level]
        self.cfg, self.num_classes, self.stride = cfg, num_classes, spec.stride
        self.heatmap = _branch(spec.channels, cfg.head_channels, num_classes)
        self.size = _branch(spec.channels, cfg.head_channels, 2)
        self.offset = _branch(spec.channels, cfg.head_channels, 2)
        nn.init.constant_(self.heatmap[-1].bias, cfg.heatmap_bias)
        self.losses = nn.ModuleDict(losses)

    def _outputs(self, features: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x = features[self.cfg.in_level]
        return self.heatmap(x), self.size(x), self.offset(x)

    def forward(self, features: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        heat, size, offset = self._outputs(features)
        objects = [t.non_crowd() for t in batch.targets]
        centres = [t.extra(self.cfg.center_field)[:, 0] for t in objects]
        tg = build_targets([t.boxes.cpu() for t in objects], [c.cpu() for c in centres],
                           [t.labels.cpu() for t in objects], self.num_classes, tuple(heat.shape[-2:]),
                           self.stride, self.cfg.min_overlap)
        dev = heat.device
        num = max(len(tg.xs), 1)
        idx = (tg.batch_index.to(dev), slice(None), tg.ys.to(dev), tg.xs.to(dev))
        pred_size, pred_offset = size[idx], offset[idx]  # (M, 2) each
        return {
            "loss_heatmap": self.losses["loss_heatmap"](heat, tg.heatmap.to(dev), avg_factor=num),
            "loss_size": self.losses["loss_size"](pred_size, tg.size.to(dev), avg_factor=2 * num),
            "loss_offset": self.losses["loss_offset"](pred_offset, tg.offset.to(dev), avg_factor=2 * num),
        }

    @torch.no_grad()
    def predict(self, features: dict[str, Tensor], batch: Batch) -> list[Predictions]:
        heat, size, offset = self._outputs(features)
        return [decode(heat[i], size[i], offset[i], self.stride, t.image_size, t.image_id, self.cfg.top_k,
                       self.cfg.score_thr) for i, t in enumerate(batch.targets)]


def build_centernet_head(cfg: CenterNetHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int, task: str,
                         *, registry: Any = None) -> CenterNetHead:
    """Head factory: nested losses are built by ``registry`` (the plugin manager that builds the head).

    Without a registry (unit tests) only the default loss types (``centernet_focal``, ``l1``) can be built.

    Raises:
        ConfigError: a task other than ``bbox``, or an ``in_level`` the neck does not have.
    """
    if task != "bbox":
        raise ConfigError(f"head centernet supports task 'bbox' only, not {task!r}")
    slots = {"loss_heatmap": cfg.loss_heatmap, "loss_size": cfg.loss_size, "loss_offset": cfg.loss_offset}
    if registry is not None:
        losses = {k: registry.build("loss", v) for k, v in slots.items()}
    else:
        losses = {k: build_default_loss(v) for k, v in slots.items()}
    return CenterNetHead(cfg, input_shape, num_classes, losses)

