"""CenterNet training targets on the output grid: Gaussian heatmaps, sizes and sub-pixel offsets (paper §3).

Units: the output grid has one cell per ``stride`` input pixels; an object centre at input pixel (x, y) is at
grid position (x / stride, y / stride), its peak at the integer cell (floor, floor), its offset the fractional
part, its size (w / stride, h / stride) in grid cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """Radius r (grid cells) of the Gaussian around a peak, from the box size (paper §3, from CornerNet).

    The smallest r among three cases -- both corners shifted inwards, outwards, or one in and one out by r --
    such that a box whose corners are displaced by r still has IoU >= ``min_overlap`` with the true one. Each
    case solves a quadratic ``a r^2 - b r + c = 0``; as in the reference code, the root is taken as
    ``(b + sqrt(b^2 - 4 a c)) / 2`` (without dividing by ``a``) for every case, which is what the paper's
    models were trained with.

    Args:
        height, width: box size in grid cells (the reference passes ``ceil`` of each).
        min_overlap: IoU bound (paper: 0.7).
    Returns:
        r >= 0, a float (callers take ``max(0, int(r))``).
    """
    s, a = height + width, height * width
    b1, c1 = s, a * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(max(b1 * b1 - 4 * c1, 0.0))) / 2
    b2, c2 = 2 * s, (1 - min_overlap) * a
    r2 = (b2 + math.sqrt(max(b2 * b2 - 16 * c2, 0.0))) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * s, (min_overlap - 1) * a
    r3 = (b3 + math.sqrt(max(b3 * b3 - 4 * a3 * c3, 0.0))) / 2
    return min(r1, r2, r3)


def gaussian_kernel(radius: int) -> Tensor:
    """(2r+1, 2r+1) float32 ``exp(-(dx^2 + dy^2) / (2 sigma^2))``, sigma = (2r+1) / 6, 1 at the centre."""
    d = torch.arange(-radius, radius + 1, dtype=torch.float32)
    sigma = (2 * radius + 1) / 6
    g = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma * sigma))
    g[g < torch.finfo(torch.float32).eps * g.max()] = 0
    return g


def draw_gaussian(heatmap: Tensor, cx: int, cy: int, radius: int) -> None:
    """In place: ``heatmap[y, x] = max(heatmap[y, x], kernel)`` around (cx, cy), clipped at the borders."""
    h, w = heatmap.shape
    g = gaussian_kernel(radius)
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return
    region = heatmap[cy - top:cy + bottom, cx - left:cx + right]
    torch.maximum(region, g[radius - top:radius + bottom, radius - left:radius + right], out=region)


@dataclass
class CenterTargets:
    """Targets of a batch.

    Attributes:
        heatmap: (B, C, H, W) float32 Gaussian heatmaps (1 at each centre cell).
        batch_index, ys, xs: (M,) int64 cell of each of the M objects of the batch.
        size: (M, 2) float32 (w, h) in grid cells.
        offset: (M, 2) float32 centre minus its integer cell, in [0, 1).
    """

    heatmap: Tensor
    batch_index: Tensor
    ys: Tensor
    xs: Tensor
    size: Tensor
    offset: Tensor


def build_targets(boxes: list[Tensor], centres: list[Tensor], labels: list[Tensor], num_classes: int,
                  grid: tuple[int, int], stride: int, min_overlap: float = 0.7) -> CenterTargets:
    """Heatmaps and regression targets of B images.

    Args:
        boxes: per image (N, 4) float xyxy input pixels (non-crowd objects).
        centres: per image (N, 2) float centre xy, input pixels (the ``centernet_centers`` field).
        labels: per image (N,) int64 class indices.
        num_classes: C.
        grid: (H, W) of the output map (the padded input / stride).
        stride: input pixels per grid cell.
        min_overlap: Gaussian radius IoU bound.
    Returns:
        :class:`CenterTargets`; objects whose centre falls outside the grid are dropped.
    """
    h, w = grid
    heatmap = torch.zeros(len(boxes), num_classes, h, w)
    bidx, ys, xs, sizes, offsets = [], [], [], [], []
    for b, (bx, ct, lb) in enumerate(zip(boxes, centres, labels, strict=True)):
        for box, c, label in zip(bx.float().tolist(), (ct.float() / stride).tolist(), lb.tolist(), strict=True):
            bw, bh = (box[2] - box[0]) / stride, (box[3] - box[1]) / stride
            cx, cy = int(math.floor(c[0])), int(math.floor(c[1]))
            if bw <= 0 or bh <= 0 or not (0 <= cx < w and 0 <= cy < h):
                continue
            radius = max(0, int(gaussian_radius(math.ceil(bh), math.ceil(bw), min_overlap)))
            draw_gaussian(heatmap[b, label], cx, cy, radius)
            bidx.append(b)
            ys.append(cy)
            xs.append(cx)
            sizes.append((bw, bh))
            offsets.append((c[0] - cx, c[1] - cy))
    long = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    pair = lambda v: torch.tensor(v, dtype=torch.float32).reshape(-1, 2)  # noqa: E731
    return CenterTargets(heatmap, long(bidx), long(ys), long(xs), pair(sizes), pair(offsets))
