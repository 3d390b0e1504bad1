"""Candidate selection and NMS that trace into a graph (``lsvr export --postprocess``).

Eager decoding filters candidates by score before NMS and stops NMS early (data-dependent control flow that
neither ``torch.export`` nor ONNX capture). The graph form keeps fixed shapes up to NMS and applies the score
threshold after it:

* :func:`topk_pairs` takes a fixed number of (location, class) pairs by score (ONNX ``TopK``);
* :func:`nms_keep` runs class-wise greedy NMS over all of them (torchvision's ``nms``, exported as ONNX
  ``NonMaxSuppression``), then keeps the survivors above the score threshold, best first, at most ``max_dets``.

Greedy NMS visits candidates by decreasing score and a box is only suppressed by higher-scoring boxes of its
class, so candidates below the threshold (visited last) never suppress one above it: NMS-then-threshold keeps
exactly the boxes of threshold-then-NMS over the same candidates. The graph equals eager decoding whenever its
fixed candidate set contains every candidate eager decoding keeps (each head's ``export_postprocess`` says
when that holds).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms


def topk_pairs(scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` highest-scoring (location, class) pairs of ``scores``.

    Args:
        scores: (M, C) float per-location class scores; M and C static.
        k: pairs to take (clipped to M * C at trace time, so the output shape is static).
    Returns:
        (scores (k,), location index (k,) int64, class index (k,) int64), by decreasing score.
    """
    num_classes = scores.shape[1]
    k = min(int(k), scores.shape[0] * num_classes)
    top, flat = scores.flatten().topk(k)
    return top, torch.div(flat, num_classes, rounding_mode="floor"), flat % num_classes


def nms_keep(boxes: Tensor, scores: Tensor, labels: Tensor, *, iou_thr: float, score_thr: float,
             max_dets: int) -> Tensor:
    """Class-wise greedy NMS over every candidate, then the survivors with score > ``score_thr``.

    Classes are separated by offsetting each box by ``label * (max coordinate + 1)`` (torchvision's
    ``batched_nms`` coordinate trick), without its empty-input branch, which does not trace.

    Args:
        boxes: (N, 4) float xyxy pixels, N >= 1 static. scores: (N,) float. labels: (N,) int64.
        iou_thr: IoU > ``iou_thr`` suppresses. score_thr: kept scores are > this. max_dets: at most this many.
    Returns:
        (K,) int64 indices into the inputs, by decreasing score, K <= max_dets (data-dependent).
    """
    offsets = labels.to(boxes.dtype) * (boxes.max() + 1)
    keep = nms(boxes + offsets[:, None], scores, float(iou_thr))
    keep = keep[scores[keep] > score_thr]
    return keep[:max_dets]
