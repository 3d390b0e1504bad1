"""CenterNet inference: 3x3 max-pool peaks, top-K, boxes from size and offset (paper §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lsvr_core.api import Predictions


def decode(heat_logits: Tensor, size: Tensor, offset: Tensor, stride: int, image_size: tuple[int, int],
           image_id: int, top_k: int = 100, score_thr: float = 0.0) -> Predictions:
    """Detections of one image.

    A cell is a peak when its heatmap value equals the maximum of its 3x3 neighbourhood (max-pool, stride
    1, padding 1 -- the paper's NMS replacement). The ``top_k`` peaks over all classes are kept; peak (x, y)
    of class c with offset (dx, dy) and size (w, h) gives the box centred at ((x + dx) * s, (y + dy) * s) of
    size (w * s, h * s), clipped to the image.

    Args:
        heat_logits: (C, H, W) heatmap logits; size, offset: (2, H, W) (w, h) and (dx, dy) in grid cells.
        stride: input pixels per cell; image_size: (H, W) of the image before padding, pixels.
        image_id: copied into the predictions.
    Returns:
        input-frame :class:`Predictions`: boxes (K, 4) float32 xyxy pixels, scores (K,) sigmoid heatmap values,
        labels (K,) int64, sorted by score.
    """
    heat = heat_logits.float().sigmoid()
    c, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat[None], 3, stride=1, padding=1)[0] == heat)
    ih, iw = image_size  # cells whose centre lies in the padding cannot hold an object
    valid_h, valid_w = min(h, -(-ih // stride)), min(w, -(-iw // stride))
    peaks[:, valid_h:, :] = 0
    peaks[:, :, valid_w:] = 0
    scores, index = peaks.flatten().topk(min(top_k, peaks.numel()))
    labels = torch.div(index, h * w, rounding_mode="floor")
    cell = index % (h * w)
    ys, xs = torch.div(cell, w, rounding_mode="floor"), cell % w
    cx = (xs.float() + offset[0, ys, xs].float()) * stride
    cy = (ys.float() + offset[1, ys, xs].float()) * stride
    wh = size[:, ys, xs].float().clamp(min=0) * stride  # a negative size (untrained head) gives an empty box
    half_w, half_h = wh[0] / 2, wh[1] / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, iw)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ih)
    keep = scores >= score_thr
    return Predictions(boxes=boxes[keep], scores=scores[keep], labels=labels[keep], image_id=image_id)
