"""Centroid assigner of LSNet's init stage (RepPoints-v2 ``PointAssignerV2``; LSNet spec §3.1)."""

from __future__ import annotations

import torch
from torch import Tensor

from lsvr_core.api import Registry
from lsvr_lsnet.config import CentroidAssignerConfig

_OFF_LEVEL = 1e8  # distance given to points that are not on the GT's level (the reference's sentinel)


def gt_levels(gt_boxes: Tensor, scale: float, min_level: int, max_level: int) -> Tensor:
    """FPN level of each GT box: ``trunc(log2(sqrt(w*h) / scale))`` clamped to [min_level, max_level].

    Args:
        gt_boxes: (G, 4) xyxy pixels.
        scale: the ``point_base_scale`` (4 in the reference).
        min_level, max_level: the level numbers of the finest / coarsest FPN level (3 and 7 for P3-P7).
    Returns:
        (G,) int64 level numbers; with scale 4: sqrt(wh) < 64 -> 3, [64, 128) -> 4, [128, 256) -> 5, ...
    Source: LSNet spec §3.1 (w, h clamped to >= 1e-6).
    """
    wh = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=1e-6)
    lvl = ((torch.log2(wh[:, 0] / scale) + torch.log2(wh[:, 1] / scale)) / 2).trunc()
    return lvl.clamp(min_level, max_level).long()


class CentroidAssigner:
    """Assign to each GT the ``pos_num`` grid points nearest to its box centre on its scale-selected level.

    Args:
        scale: ``point_base_scale`` of the level rule (:func:`gt_levels`).
        pos_num: positives per GT.
    """

    def __init__(self, scale: float = 4.0, pos_num: int = 1) -> None:
        self.scale, self.pos_num = scale, pos_num

    @torch.no_grad()
    def __call__(self, points: Tensor, levels: Tensor, gt_boxes: Tensor) -> Tensor:
        """Args:
            points: (P, 2) float grid points, xy pixels (only the valid points of one image).
            levels: (P,) int64 level number of each point (log2 of its stride: 3 for P3).
            gt_boxes: (G, 4) float xyxy pixels.
        Returns:
            (P,) int64 index of the assigned GT per point, -1 for negatives.
        Source: LSNet spec §3.1: distance on the GT's level only, per-axis normalised by the GT's (w, h);
            other levels get 1e8 and are never chosen; a point picked by several GTs keeps the nearest one.
        """
        num_points, num_gts = points.shape[0], gt_boxes.shape[0]
        assigned = points.new_full((num_points,), -1, dtype=torch.long)
        if num_points == 0 or num_gts == 0:
            return assigned
        gt_lvl = gt_levels(gt_boxes, self.scale, int(levels.min()), int(levels.max()))  # (G,)
        centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        wh = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=1e-6)
        dist = (((points[None] - centre[:, None]) / wh[:, None]) ** 2).sum(-1).sqrt()  # (G, P)
        dist = torch.where(levels[None] == gt_lvl[:, None], dist, dist.new_tensor(_OFF_LEVEL))
        k = min(self.pos_num, num_points)
        near_dist, near_idx = dist.topk(k, dim=1, largest=False)  # (G, k)
        gt_idx = torch.arange(num_gts, device=points.device)[:, None].expand(-1, k).reshape(-1)
        near_dist, near_idx = near_dist.reshape(-1), near_idx.reshape(-1)
        keep = near_dist < _OFF_LEVEL  # an off-level pick means the GT has no point on its level
        gt_idx, near_dist, near_idx = gt_idx[keep], near_dist[keep], near_idx[keep]
        best = dist.new_full((num_points,), float("inf")).scatter_reduce(0, near_idx, near_dist, "amin")
        wins = near_dist <= best[near_idx]  # a point picked by several GTs keeps the nearest one
        assigned[near_idx[wins]] = gt_idx[wins]
        return assigned


def build_centroid(cfg: CentroidAssignerConfig, *, registry: Registry | None = None) -> CentroidAssigner:
    """Factory of the ``centroid`` assigner."""
    return CentroidAssigner(cfg.scale, cfg.pos_num)
