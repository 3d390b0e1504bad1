"""Traceable Hybrid Task Cascade inference of one image (``lsvr export --postprocess`` of the ``htc`` head).

``HTCHead.predict`` splits the cascade stages' proposals by Python counts of data-dependent lists, clips with
Python-int image sizes and runs torchvision's ``batched_nms``, whose Python branches on ``boxes.numel()``
``torch.export`` cannot capture. :func:`htc_detections` runs the same computation for one image with the image
size as a tensor (``image_size`` (2,) int64 ``[h, w]``), reusing :mod:`lsvr_core.export.rcnn`:

* proposals: :func:`~lsvr_core.export.rcnn.rpn_proposals` (the same RPN class as Mask R-CNN's);
* per stage t: the head's own ``_box_stage`` (RoIAlign + semantic embedding + two FCs + predictor) on the
  current boxes; stages 0..T-2 regress the boxes with their class-agnostic deltas and stage t's coder, clipped
  to ``image_size``; the last stage's deltas regress the last boxes into the final ones;
* scores: softmax of the mean of the T stages' logits, background dropped; candidates (box, class) with score
  > ``box_score_thresh``; class-wise NMS by coordinate offsets (the path ``batched_nms`` takes for up to 1000
  candidates; above that it loops over classes, which differs only by the rounding of the offset coordinates
  in IoU); the first ``box_detections_per_img``; no small-box removal (HTC's ``_detections`` has none);
* masks: the T mask heads with information flow on the detections' RoI features (plus the semantic
  embedding), the mean of their sigmoids, each detection's class channel.

Every expression mirrors ``HTCHead.predict`` (the same sums and divisions in the same order), so the results
are the eager ones bit for bit up to the NMS path noted above. Source: HTC (Chen et al., CVPR 2019) §3, mmdet
2.11 ``HybridTaskCascadeRoIHead.simple_test``; LESA spec §4.2.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor

from lsvr_core.export.rcnn import clip_to_size, nms_class_offsets, rpn_proposals


def cascade_boxes(head: Any, feats: OrderedDict, embedding: Tensor | None, proposals: Tensor, image_size: Tensor,
                  input_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The box stages of the cascade on one image's proposals, as ``HTCHead.predict``.

    Args:
        head: the ``HTCHead`` (eval mode).
        feats: the head's levels, name -> (1, C, H_l, W_l) float32.
        embedding: the semantic embedding (1, C, H_f, W_f) or None without the semantic branch.
        proposals: (P, 4) float32 xyxy input pixels.
        image_size: (2,) int64 ``[h, w]`` of the resized image (boxes are clipped to it).
        input_size: the padded input ``(H, W)`` (passed to the poolers, which do not use it).
    Returns:
        (mean class logits (P, K + 1) float32, background at 0; final boxes (P, 4) float32 xyxy input pixels).
    """
    sizes = [input_size]
    rois = proposals
    ms_logits = []
    last_deltas = proposals  # replaced by the first stage
    for t in range(head.num_stages):
        logits, deltas = head._box_stage(t, feats, embedding, [rois], sizes)  # (P, K + 1), (P, 4)
        ms_logits.append(logits)
        last_deltas = deltas
        if t < head.num_stages - 1:
            rois = clip_to_size(head.box_coders[t].decode_single(deltas, rois), image_size)
    final = clip_to_size(head.box_coders[head.num_stages - 1].decode_single(last_deltas, rois), image_size)
    return sum(ms_logits) / len(ms_logits), final


def cascade_detections(head: Any, logits: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``HTCHead._detections`` without its Python branches.

    Args:
        head: the ``HTCHead``. logits: (P, K + 1) float32 mean logits. boxes: (P, 4) float32 xyxy pixels.
    Returns:
        boxes (N, 4) float32, scores (N,) float32 by decreasing score, labels (N,) int64 in [0, K).
    """
    scores = logits.softmax(-1)[:, 1:]  # (P, K)
    k = scores.shape[1]
    labels = torch.arange(k, device=scores.device).expand_as(scores)
    cand = boxes[:, None].expand(-1, k, 4)
    keep = scores > head.cfg.box_score_thresh
    cand, scores, labels = cand[keep], scores[keep], labels[keep]
    keep = nms_class_offsets(cand, scores, labels, head.cfg.box_nms_thresh)[: head.cfg.box_detections_per_img]
    return cand[keep], scores[keep], labels[keep]


def cascade_masks(head: Any, feats: OrderedDict, embedding: Tensor | None, boxes: Tensor, labels: Tensor,
                  input_size: tuple[int, int]) -> Tensor:
    """The mask branches with information flow on the detections, as ``HTCHead.predict``.

    Args:
        boxes: (N, 4) float32 xyxy input pixels. labels: (N,) int64 in [0, K).
    Returns:
        (N, M, M) float32 probabilities over the boxes (M = 28): the mean of the T heads' sigmoids at each
        detection's class.
    """
    x = head._roi_features(head.mask_pool, feats, embedding, [boxes], [input_size])
    last, probs = None, []
    for t in range(head.num_stages):
        logits, last = head.mask_heads[t](x, last if head.cfg.mask_info_flow else None)
        probs.append(logits.sigmoid())
    merged = sum(probs) / len(probs)  # (N, K, M, M)
    return merged[torch.arange(labels.shape[0]), labels]


def htc_detections(head: Any, levels: tuple[Tensor, ...], image_size: Tensor,
                   input_size: tuple[int, int]) -> dict[str, Tensor]:
    """Detections of one image, as ``HTCHead.predict`` in eval mode.

    Args:
        head: the ``HTCHead`` (eval mode).
        levels: the head's levels in ``in_levels`` order (``HTCHead.export_outputs``), each (1, C, H_l, W_l).
        image_size: (2,) int64 ``[h, w]`` of the resized image inside the padding.
        input_size: the padded input ``(H, W)``.
    Returns:
        ``boxes`` (N, 4) float32 xyxy input pixels, ``scores`` (N,), ``labels`` (N,) int64 in [0, K) and, for
        segm, ``roi_masks`` (N, 28, 28) float32 probabilities over the boxes; N <= ``box_detections_per_img``.
    """
    feats = OrderedDict(zip(head.in_levels, levels, strict=True))
    level_list = list(feats.values())
    proposals = rpn_proposals(head.rpn, head.rpn.anchor_generator.single(level_list), level_list, image_size)
    _, embedding = head._semantic(feats)
    logits, final = cascade_boxes(head, feats, embedding, proposals, image_size, input_size)
    boxes, scores, labels = cascade_detections(head, logits, final)
    out = {"boxes": boxes, "scores": scores, "labels": labels}
    if head.with_mask:
        out["roi_masks"] = cascade_masks(head, feats, embedding, boxes, labels, input_size)
    return out
