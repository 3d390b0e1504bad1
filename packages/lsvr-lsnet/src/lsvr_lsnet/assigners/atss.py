"""ATSS (Zhang et al. 2020) over predicted boxes: LSNet's refine-stage and classification assigner (spec §3.2)."""

from __future__ import annotations

import torch
from torch import Tensor

from lsvr_core.api import Registry
from lsvr_lsnet.config import ATSSAssignerConfig


def box_overlaps(boxes: Tensor, gt_boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of every box with every GT (no +1; union clamped to ``eps`` as mmdet's ``bbox_overlaps``).

    Args:
        boxes: (P, 4) xyxy; predicted boxes may be inverted (their area then is negative, as in the reference).
        gt_boxes: (G, 4) xyxy.
    Returns:
        (P, G) float IoU.
    """
    area_p = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_g = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    lt = torch.maximum(boxes[:, None, :2], gt_boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], gt_boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = (area_p[:, None] + area_g[None, :] - inter).clamp(min=eps)
    return inter / union


class ATSSAssigner:
    """Adaptive training sample selection on predicted boxes.

    Args:
        topk: candidates per level and GT (the predicted-box centres nearest to the GT centre).
        inside_eps: a positive's predicted-box centre must be inside the GT by more than this many pixels.
    """

    def __init__(self, topk: int = 9, inside_eps: float = 0.01) -> None:
        self.topk, self.inside_eps = topk, inside_eps

    @torch.no_grad()
    def __call__(self, boxes: Tensor, num_level_points: list[int], gt_boxes: Tensor) -> Tensor:
        """Args:
            boxes: (P, 4) float xyxy pixels, one predicted box per valid grid point, levels concatenated in order.
            num_level_points: number of points of each level in ``boxes`` (sums to P).
            gt_boxes: (G, 4) float xyxy pixels.
        Returns:
            (P,) int64 index of the assigned GT per point, -1 for negatives.
        Source: LSNet spec §3.2: per level the ``topk`` nearest centres; IoU threshold = mean + unbiased std of
            the candidates' IoUs; positive if IoU >= threshold and the centre lies inside the GT; a point that
            is positive for several GTs takes the one with the highest IoU.
        """
        num_points, num_gts = boxes.shape[0], gt_boxes.shape[0]
        assigned = boxes.new_full((num_points,), -1, dtype=torch.long)
        if num_points == 0 or num_gts == 0:
            return assigned
        overlaps = box_overlaps(boxes, gt_boxes)  # (P, G)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (P, 2)
        gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (G, 2)
        distances = torch.cdist(centres, gt_centres)  # (P, G)

        candidates, start = [], 0
        for count in num_level_points:
            if count > 0:
                k = min(self.topk, count)
                _, idx = distances[start:start + count].topk(k, dim=0, largest=False)  # (k, G)
                candidates.append(idx + start)
            start += count
        cand = torch.cat(candidates, dim=0)  # (C, G)
        gt_cols = torch.arange(num_gts, device=boxes.device)
        cand_iou = overlaps[cand, gt_cols]  # (C, G)
        threshold = cand_iou.mean(dim=0) + cand_iou.std(dim=0)  # std: unbiased, as torch's default
        is_pos = cand_iou >= threshold[None]

        cx, cy = centres[cand, 0], centres[cand, 1]  # (C, G)
        inside = torch.stack([cx - gt_boxes[:, 0], cy - gt_boxes[:, 1], gt_boxes[:, 2] - cx, gt_boxes[:, 3] - cy])
        is_pos &= inside.min(dim=0).values > self.inside_eps

        masked = torch.full_like(overlaps, -1.0)  # IoU >= 0, so -1 marks "not a positive of this GT"
        pos_points, pos_gts = cand[is_pos], gt_cols[None].expand_as(cand)[is_pos]
        masked[pos_points, pos_gts] = overlaps[pos_points, pos_gts]
        best_iou, best_gt = masked.max(dim=1)
        hit = best_iou >= 0
        assigned[hit] = best_gt[hit]
        return assigned


def build_atss(cfg: ATSSAssignerConfig, *, registry: Registry | None = None) -> ATSSAssigner:
    """Factory of the ``atss`` assigner."""
    return ATSSAssigner(cfg.topk, cfg.inside_eps)
