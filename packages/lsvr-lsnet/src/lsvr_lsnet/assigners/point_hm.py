"""Corner heatmap targets of CPV: on every FPN level, the grid point nearest to each box's top-left (bottom-right)
corner is a positive with a sub-cell offset target, and points within the CornerNet radius get a Gaussian bump
(LSNet spec §3.3, §5 "Targets"; reference ``point_hm_assigner.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lsvr_lsnet.config import PointHeatmapAssignerConfig


def gaussian_radius(height: Tensor, width: Tensor, min_overlap: float) -> Tensor:
    """CornerNet's corner radius: the largest r such that a box with both corners moved by r still has IoU >=
    ``min_overlap`` with the original, the minimum over CornerNet's three cases.

    Args:
        height, width: (G,) box sizes, pixels.
        min_overlap: the IoU (0.7 in CPV).
    Returns:
        (G,) radius, pixels (not rounded).
    Source: CornerNet ``gaussian_radius`` as restated in the reference ``point_hm_assigner.py``.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 - torch.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 - torch.sqrt(b2**2 - 16 * c2)) / 8
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / (2 * a3)
    return torch.stack([r1, r2, r3], dim=1).min(dim=1).values


@dataclass
class CornerTargets:
    """Heatmap and offset targets of one corner type over P points.

    Attributes:
        heatmap: (P,) float in [0, 1]; exactly 1 at positives.
        offset: (P, 2) float (corner - point) / stride as (x, y), set at positives (0 elsewhere).
    """

    heatmap: Tensor
    offset: Tensor

    @property
    def positive(self) -> Tensor:
        """(P,) bool, heatmap == 1."""
        return self.heatmap == 1


class PointHeatmapAssigner:
    """``(points (P, 2) xy px, point_strides (P,), gt_boxes (G, 4) xyxy px) -> (tl, br)`` :class:`CornerTargets`.

    Per level (points grouped by stride) and corner type: every point at pixel distance d < r of a corner gets
    exp(-d² / (2σ²)), σ = (2r + 1) / 6, r = :func:`gaussian_radius` (max over boxes; when ``gaussian_bump``);
    then the nearest point of each box gets 1 and the offset target (corner - point) / stride. Where boxes share
    a nearest point, the last box's offset is kept (the reference's indexed write). Points and boxes are in
    pixels; offsets in cells of the level.

    Args:
        gaussian_bump: soft targets around the positives (CPV: True).
        gaussian_iou: ``min_overlap`` of the radius (0.7).
    Source: LSNet spec §3.3, §5 (``PointHMAssigner(gaussian_bump=True, gaussian_iou=0.7)``).
    """

    def __init__(self, gaussian_bump: bool = True, gaussian_iou: float = 0.7) -> None:
        self.gaussian_bump, self.gaussian_iou = gaussian_bump, gaussian_iou

    @torch.no_grad()
    def __call__(self, points: Tensor, point_strides: Tensor, gt_boxes: Tensor) -> tuple[CornerTargets, CornerTargets]:
        return (self._corner(points, point_strides, gt_boxes, gt_boxes[:, :2]),
                self._corner(points, point_strides, gt_boxes, gt_boxes[:, 2:]))

    def _corner(self, points: Tensor, point_strides: Tensor, boxes: Tensor, corners: Tensor) -> CornerTargets:
        p = points.shape[0]
        heatmap = points.new_zeros(p)
        offset = points.new_zeros(p, 2)
        if p == 0 or boxes.shape[0] == 0:
            return CornerTargets(heatmap, offset)
        dist = (points[:, None, :] - corners[None, :, :]).norm(dim=2)  # (P, G) pixels
        if self.gaussian_bump:
            radius = gaussian_radius(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0], self.gaussian_iou)
            sigma = (2 * radius + 1) / 6
            bump = torch.exp(-dist**2 / (2 * sigma**2)[None])
            bump = torch.where(dist < radius[None], bump, bump.new_tensor(-1.0)).max(dim=1).values  # (P,)
            heatmap = torch.where(bump >= 0, bump, heatmap)
        for stride in point_strides.unique():
            idx = (point_strides == stride).nonzero().squeeze(1)
            nearest = idx[dist[idx].argmin(dim=0)]  # (G,) the point of this level nearest to each corner
            offset[nearest] = (corners - points[nearest]) / stride
            heatmap[nearest] = 1.0
        return CornerTargets(heatmap, offset)


def build_point_hm(cfg: PointHeatmapAssignerConfig, *, registry: object = None) -> PointHeatmapAssigner:
    """Factory of the ``point_hm`` assigner."""
    return PointHeatmapAssigner(cfg.gaussian_bump, cfg.gaussian_iou)
