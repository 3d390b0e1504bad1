"""CPV training targets and losses: corner heatmaps and offsets (point heatmap assigner) and the semantic
(foreground) maps built from the boxes (spec §5 "Targets/losses")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_core.api import Batch
from lsvr_lsnet.criterion import flatten_levels
from lsvr_lsnet.targets import grid_points, valid_points


@dataclass
class CornerOutputs:
    """CPV's extra per-level outputs (levels fine to coarse).

    Attributes:
        scores: [(N, 2, H_l, W_l)] corner heatmap logits (top-left, bottom-right).
        offsets: [(N, 4, H_l, W_l)] corner offsets (tl_x, tl_y, br_x, br_y), cells.
        semantic: [(N, C, H_l, W_l)] per-class foreground logits.
    """

    scores: list[Tensor]
    offsets: list[Tensor]
    semantic: list[Tensor]


def semantic_targets(batch: Batch, num_classes: int, stride: int = 8) -> tuple[Tensor, Tensor]:
    """Per-class box masks at ``stride`` over the batch-padded images.

    Cells floor(x1 / s)..floor(x2 / s) x floor(y1 / s)..floor(y2 / s) (inclusive) of each non-crowd box get target
    1 in its class channel and weight 1 / box area (px²); boxes are painted from the largest to the smallest
    area, so smaller boxes overwrite.

    Returns:
        target, weight: (N, num_classes, H_pad / s, W_pad / s) float32.
    Source: LSNet spec §5 "Semantic loss" (reference ``LoadRPDV2Annotations``).
    """
    n = len(batch.targets)
    h, w = batch.images.shape[-2] // stride, batch.images.shape[-1] // stride
    device = batch.images.device
    target = torch.zeros((n, num_classes, h, w), device=device)
    weight = torch.zeros_like(target)
    for i, t in enumerate(batch.targets):
        t = t.non_crowd()
        boxes, labels = t.boxes.float().tolist(), t.labels.tolist()
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        for j in sorted(range(len(boxes)), key=lambda k: areas[k], reverse=True):
            x1, y1, x2, y2 = (int(v / stride) for v in boxes[j])
            target[i, labels[j], y1:y2 + 1, x1:x2 + 1] = 1.0
            weight[i, labels[j], y1:y2 + 1, x1:x2 + 1] = 1.0 / areas[j] if areas[j] > 0 else 0.0
    return target, weight


class CornerCriterion(nn.Module):
    """``{loss_heatmap, loss_offset, loss_sem}`` of CPV.

    Heatmap: ``loss_heatmap`` on sigmoid(score) over the valid points of every level, normalised by the positive
    corners (Σ_images max(#pos, 1)), averaged over top-left and bottom-right. Offset: ``loss_offset`` (smooth L1)
    on the positives, same normaliser, averaged over the two corners. Semantic: ``loss_sem`` over all levels'
    logits against :func:`semantic_targets` resized to each level (nearest), normalised by the number of positive
    cells (at least 1; the reference divides by 0 when a batch has no box).

    Args:
        assigner: :class:`~lsvr_lsnet.assigners.point_hm.PointHeatmapAssigner`.
        loss_heatmap, loss_offset, loss_sem: the three losses.
        num_classes: semantic channels.
        pad_divisor: valid points lie inside each image padded to this (§3).
    """

    def __init__(self, assigner: Any, loss_heatmap: nn.Module, loss_offset: nn.Module, loss_sem: nn.Module,
                 num_classes: int, pad_divisor: int) -> None:
        super().__init__()
        self.assigner = assigner
        self.loss_heatmap, self.loss_offset, self.loss_sem = loss_heatmap, loss_offset, loss_sem
        self.num_classes, self.pad_divisor = num_classes, pad_divisor

    def forward(self, out: CornerOutputs, batch: Batch, strides: list[int]) -> dict[str, Tensor]:
        sizes = [(int(s.shape[-2]), int(s.shape[-1])) for s in out.scores]
        device = out.scores[0].device
        points, point_strides, _ = grid_points(sizes, strides, device)
        scores = flatten_levels(out.scores, 2).float()  # (N, P, 1, 2)
        offsets = flatten_levels(out.offsets, 2).float()  # (N, P, 2, 2): corner, (x, y)
        pred_hm: list[list[Tensor]] = [[], []]
        gt_hm: list[list[Tensor]] = [[], []]
        pred_off: list[list[Tensor]] = [[], []]
        gt_off: list[list[Tensor]] = [[], []]
        norm = [0.0, 0.0]
        for i, targets in enumerate(batch.targets):
            vidx = valid_points(targets.image_size, sizes, strides, self.pad_divisor, device).nonzero().squeeze(1)
            boxes = targets.non_crowd().boxes.float().to(device)
            for c, t in enumerate(self.assigner(points[vidx], point_strides[vidx], boxes)):
                pos = t.positive
                pred_hm[c].append(scores[i, vidx, 0, c].sigmoid())
                gt_hm[c].append(t.heatmap)
                pred_off[c].append(offsets[i, vidx[pos], c])
                gt_off[c].append(t.offset[pos])
                norm[c] += max(int(pos.sum()), 1)
        loss_hm = sum(self.loss_heatmap(torch.cat(pred_hm[c]), torch.cat(gt_hm[c]), avg_factor=norm[c])
                      for c in (0, 1)) / 2
        loss_off = sum(self.loss_offset(torch.cat(pred_off[c]), torch.cat(gt_off[c]), avg_factor=norm[c])
                       for c in (0, 1)) / 2
        return {"loss_heatmap": loss_hm, "loss_offset": loss_off, "loss_sem": self._semantic(out.semantic, batch)}

    def _semantic(self, logits: list[Tensor], batch: Batch) -> Tensor:
        target, weight = semantic_targets(batch, self.num_classes)
        preds, targets, weights = [], [], []
        for lv in logits:
            size = lv.shape[-2:]
            preds.append(lv.float().reshape(-1))
            targets.append(F.interpolate(target, size=size, mode="nearest").reshape(-1))
            weights.append(F.interpolate(weight, size=size, mode="nearest").reshape(-1))
        t = torch.cat(targets)
        return self.loss_sem(torch.cat(preds), t, torch.cat(weights), avg_factor=max(int((t > 0).sum()), 1))
