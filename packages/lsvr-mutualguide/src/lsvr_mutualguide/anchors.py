"""Anchors of the v1 detector: 6 per location, 2 scales x 3 shapes (spec §2 "Anchors").

Level k (stride 8 * 2^k) has a grid of (h_k, w_k) cells visited row-major; cell (i, j) has centre
((j + 0.5) / w_k * W, (i + 0.5) / h_k * H) pixels. Its base size is s_k = anchor_base * 2^k pixels, and the
six anchors are the scales {s_k, sqrt(2) s_k}, each with the shapes (s, s), (sqrt(2) s, s / sqrt(2)) and
(s / sqrt(2), sqrt(2) s). As in the reference, (cx, cy, w, h) is clamped to the image component-wise
(widths and heights included; an SSD legacy). For a square input this equals the reference's normalised
[0, 1] anchors times the input size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ANCHORS_PER_LOCATION = 6


def anchor_shapes(base: float) -> Tensor:
    """(6, 2) float32 (w, h) pixels of the anchors of one location with base size ``base`` pixels (§2)."""
    r2 = math.sqrt(2.0)
    shapes = []
    for s in (base, r2 * base):
        shapes += [(s, s), (r2 * s, s / r2), (s / r2, r2 * s)]
    return torch.tensor(shapes, dtype=torch.float32)


def level_anchors(grid: tuple[int, int], image_size: tuple[int, int], base: float, device: torch.device | str = "cpu"
                  ) -> Tensor:
    """Anchors of one level in (row, column, anchor) order.

    Args:
        grid: (h_k, w_k) cells of the level's feature map.
        image_size: (H, W) of the (padded) input, pixels.
        base: base size s_k, pixels.
    Returns:
        (h_k * w_k * 6, 4) float32 (cx, cy, w, h) pixels, clamped to [0, W] / [0, H] component-wise.
    """
    gh, gw = grid
    img_h, img_w = image_size
    cy = (torch.arange(gh, dtype=torch.float32, device=device) + 0.5) * (img_h / gh)
    cx = (torch.arange(gw, dtype=torch.float32, device=device) + 0.5) * (img_w / gw)
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # (gh, gw)
    centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2).expand(-1, ANCHORS_PER_LOCATION, 2)
    shapes = anchor_shapes(base).to(device).reshape(1, ANCHORS_PER_LOCATION, 2).expand(centres.shape[0], -1, -1)
    anchors = torch.cat([centres, shapes], -1).reshape(-1, 4)  # (gh * gw * 6, 4)
    limit = torch.tensor([img_w, img_h, img_w, img_h], dtype=torch.float32, device=device)
    return torch.minimum(anchors.clamp(min=0), limit)


def generate_anchors(grids: list[tuple[int, int]], image_size: tuple[int, int], anchor_base: float = 24.0,
                     device: torch.device | str = "cpu") -> Tensor:
    """Anchors of every level, level by level (the order of the head's flattened outputs).

    Args:
        grids: (h_k, w_k) of each level, finest (stride 8) first.
        image_size: (H, W) of the (padded) input, pixels.
        anchor_base: s_0 in pixels (``--base_anchor_size``, 24 by default); level k uses anchor_base * 2^k.
    Returns:
        (A, 4) float32 (cx, cy, w, h) pixels; A = 6 * sum(h_k * w_k) (12,750 at 320 with 4 levels, 32,736 at
        512 with 5 levels).
    """
    return torch.cat([level_anchors(g, image_size, anchor_base * 2**k, device) for k, g in enumerate(grids)])


def reference_grids(size: int, num_levels: int) -> list[tuple[int, int]]:
    """The reference's grid sides f_k = ceil(size / 2^(3 + k)) for a square ``size`` input (§2)."""
    return [(math.ceil(size / 2 ** (3 + k)),) * 2 for k in range(num_levels)]
