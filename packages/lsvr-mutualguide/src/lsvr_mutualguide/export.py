"""MutualGuide decoding inside an exported graph (``lsvr export --postprocess``): §6 with fixed shapes.

The same selection as ``MutualGuideHead._predict_image`` for one image, with the score threshold applied after
NMS (:mod:`lsvr_core.api` ``topk_pairs`` / ``nms_keep``): greedy NMS never lets a lower score suppress a higher
one, so the kept detections are the same. Class-wise NMS with ``pre_nms_topk`` (the default, 1000 per class)
and agnostic NMS are exact; with ``pre_nms_topk: null`` the ``candidates`` best (anchor, class) pairs enter NMS,
which is exact when at most that many pairs score above ``score_thresh``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lsvr_core.api import nms_keep, topk_pairs

GRAPH_CANDIDATES = 10000


def decode_in_graph(head: Any, boxes: Tensor, scores: Tensor, image_size: Tensor,
                    candidates: int = GRAPH_CANDIDATES) -> dict[str, Tensor]:
    """Detections of one image.

    Args:
        head: the :class:`~lsvr_mutualguide.head.MutualGuideHead` (``nms``, ``pre_nms_topk``, ``score_thresh``,
            ``nms_thresh``, ``detections_per_img``, ``num_classes``).
        boxes: (A, 4) float32 decoded xyxy pixels. scores: (A, C) float32 sigmoid scores.
        image_size: (2,) int64 [h, w] of the resized image before padding (boxes are clamped to it).
        candidates: pairs entering class-wise NMS when ``pre_nms_topk`` is None.
    Returns:
        ``boxes`` (K, 4), ``scores`` (K,), ``labels`` (K,) int64.
    """
    limit = image_size.flip(0).to(torch.float32).repeat(2)  # [w, h, w, h]
    boxes = torch.minimum(boxes.clamp(min=0), limit)
    thr = head.score_thresh
    if head.nms == "agnostic":
        best = scores.max(1).values
        keep = nms_keep(boxes, best, torch.zeros_like(best, dtype=torch.int64), iou_thr=head.nms_thresh,
                        score_thr=thr, max_dets=boxes.shape[0])
        box_idx, labels = (scores[keep] > thr).nonzero(as_tuple=True)
        anchor_idx = keep[box_idx]
        return {"boxes": boxes[anchor_idx], "scores": scores[anchor_idx, labels], "labels": labels}
    if head.pre_nms_topk is not None and head.pre_nms_topk < scores.shape[0]:
        top, anchor_idx = scores.t().topk(head.pre_nms_topk, dim=1)  # (C, k)
        labels = torch.arange(head.num_classes, device=scores.device)[:, None].expand_as(anchor_idx)
        top, anchor_idx, labels = top.reshape(-1), anchor_idx.reshape(-1), labels.reshape(-1)
    else:
        top, anchor_idx, labels = topk_pairs(scores, candidates)
    keep = nms_keep(boxes[anchor_idx], top, labels, iou_thr=head.nms_thresh, score_thr=thr,
                    max_dets=head.detections_per_img)
    return {"boxes": boxes[anchor_idx[keep]], "scores": top[keep], "labels": labels[keep]}
