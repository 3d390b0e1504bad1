"""SSD box coding with variances (spec §2 "Box coding"), kept beside (not inside) the head.

Anchors are (cx, cy, w, h) pixels, boxes xyxy pixels. The coding is invariant to a per-axis rescaling, so it
equals the reference's coding of normalised boxes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_convert

# exp() argument cap of decoded sizes (torchvision's bbox_xform_clip): an untrained network cannot overflow
SIZE_CLIP = math.log(1000.0 / 16)


def encode(boxes: Tensor, anchors: Tensor, variances: tuple[float, float] = (0.1, 0.2)) -> Tensor:
    """Offsets that map ``anchors`` onto ``boxes``.

    Args:
        boxes: (..., 4) float xyxy pixels (positive width and height).
        anchors: (..., 4) float (cx, cy, w, h) pixels, broadcastable to ``boxes``.
        variances: (v_c, v_s); t_xy = (g_c - a_c) / (v_c a_wh), t_wh = log(g_wh / a_wh) / v_s.
    Returns:
        (..., 4) float offsets (t_x, t_y, t_w, t_h).
    """
    g = box_convert(boxes, "xyxy", "cxcywh")
    t_xy = (g[..., :2] - anchors[..., :2]) / (variances[0] * anchors[..., 2:])
    t_wh = torch.log(g[..., 2:] / anchors[..., 2:]) / variances[1]
    return torch.cat([t_xy, t_wh], -1)


def decode(offsets: Tensor, anchors: Tensor, variances: tuple[float, float] = (0.1, 0.2)) -> Tensor:
    """Inverse of :func:`encode`.

    Args:
        offsets: (..., 4) float (t_x, t_y, t_w, t_h).
        anchors: (..., 4) float (cx, cy, w, h) pixels, broadcastable to ``offsets``.
    Returns:
        (..., 4) float xyxy pixels. ``v_s t_wh`` is capped at log(1000/16) (a guard the reference lacks; it
        only matters for diverging predictions).
    """
    c = anchors[..., :2] + offsets[..., :2] * variances[0] * anchors[..., 2:]
    wh = anchors[..., 2:] * torch.exp((offsets[..., 2:] * variances[1]).clamp(max=SIZE_CLIP))
    return torch.cat([c - wh / 2, c + wh / 2], -1)
