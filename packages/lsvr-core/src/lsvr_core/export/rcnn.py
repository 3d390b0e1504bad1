"""Traceable two-stage inference (``lsvr export --postprocess`` of the ``mask_rcnn`` head).

torchvision's ``RegionProposalNetwork.filter_proposals`` and ``RoIHeads.postprocess_detections`` loop over the
images of a batch, branch in Python on data (``batched_nms``'s ``boxes.numel()`` checks, ``BoxCoder.decode``'s
``box_sum > 0``) and clip boxes to Python-int image sizes; ``torch.export`` cannot capture them. The functions
below run the same computation for one image, op for op, with:

* the image size as a tensor (``image_size`` (2,) int64 ``[h, w]``), so one exported graph clips boxes to the
  resized image inside any padding, as eager inference does with ``ImageList.image_sizes``;
* the data-dependent selections (small-box removal, score thresholds, NMS survivors, the post-NMS cut) as
  boolean / index selections, which ``torch.export`` records as data-dependent sizes;
* ``batched_nms`` without its Python branches: the RPN runs one NMS per FPN level (torchvision's per-class
  path, which eager inference takes whenever more than 1000 proposals reach NMS, as it does at every usual input
  size), the RoI stage the class-offset path (which eager inference takes for up to 1000 candidates; above
  that it loops over classes, and the two differ only by the rounding of the offset coordinates in IoU).

The weights are the eager modules' (``head.rpn``, ``head.roi_heads``); nothing is copied.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import nms


def clip_to_size(boxes: Tensor, image_size: Tensor) -> Tensor:
    """``torchvision.ops.clip_boxes_to_image`` with a tensor size: boxes (..., 4) xyxy pixels clamped to
    ``[0, w] x [0, h]``; ``image_size`` (2,) int64 ``[h, w]``."""
    limit = image_size.flip(0).to(boxes.dtype).repeat(2)  # [w, h, w, h]
    return torch.minimum(boxes.clamp(min=0), limit)


def not_small(boxes: Tensor, min_size: float) -> Tensor:
    """``torchvision.ops.remove_small_boxes`` as a (N,) bool mask: both sides >= ``min_size`` pixels."""
    return ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)


def nms_per_group(boxes: Tensor, scores: Tensor, groups: list[Tensor], iou_thr: float) -> Tensor:
    """torchvision's ``_batched_nms_vanilla`` with the groups given: one greedy NMS per group.

    Args:
        boxes: (N, 4) float xyxy. scores: (N,) float.
        groups: per group, its boxes' indices (n_g,) int64 into ``boxes``, ascending.
    Returns:
        (K,) int64 indices of the survivors by decreasing score (the same sort call as torchvision's, on the
        same ascending index list, so ties come out in the same order).
    """
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for idx in groups:
        keep = nms(boxes[idx], scores[idx], float(iou_thr))
        keep_mask[idx[keep]] = True
    kept = torch.where(keep_mask)[0]
    return kept[scores[kept].sort(descending=True)[1]]


def nms_class_offsets(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thr: float) -> Tensor:
    """torchvision's ``_batched_nms_coordinate_trick`` without its empty-input branch: class-wise greedy NMS by
    offsetting each box by ``label * (max coordinate + 1)``. Empty inputs give an empty result (``max`` of an
    empty tensor is avoided by padding with a zero). Returns (K,) int64 indices by decreasing score."""
    top = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max()
    offsets = labels.to(boxes) * (top + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, float(iou_thr))


def rpn_proposals(rpn: Any, anchors: Tensor, feats: list[Tensor], image_size: Tensor) -> Tensor:
    """Proposals of one image, as ``RegionProposalNetwork.forward`` in eval mode.

    Per level the ``pre_nms_top_n`` best anchors by objectness, decoded and clipped to ``image_size``, boxes
    with a side < ``min_size`` dropped, objectness >= ``score_thresh`` kept, NMS per level, the first
    ``post_nms_top_n`` by objectness.

    Args:
        rpn: the head's ``RegionProposalNetwork`` (eval mode).
        anchors: (A_total, 4) float32 xyxy input pixels, levels concatenated (the anchor generator's order).
        feats: per RPN level (1, C, H_l, W_l).
        image_size: (2,) int64 ``[h, w]`` of the resized image.
    Returns:
        (P, 4) float32 xyxy input pixels, P <= ``post_nms_top_n`` (data-dependent).
    """
    objectness, deltas = rpn.head(feats)
    per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)  # (A_total, 1), (A_total, 4)
    proposals = rpn.box_coder.decode_single(deltas.detach(), anchors)
    objectness = objectness.reshape(1, -1)
    top_idx, levels, offset = [], [], 0
    for lv, n in enumerate(per_level):
        k = min(rpn.pre_nms_top_n(), n)
        top_idx.append(objectness[:, offset : offset + n].topk(k, dim=1)[1][0] + offset)
        levels.append(torch.full((k,), lv, dtype=torch.int64))
        offset += n
    idx, level = torch.cat(top_idx), torch.cat(levels)
    scores = torch.sigmoid(objectness[0, idx])
    boxes = clip_to_size(proposals[idx], image_size)
    keep = not_small(boxes, rpn.min_size) & (scores >= rpn.score_thresh)
    boxes, scores, level = boxes[keep], scores[keep], level[keep]
    groups = [torch.where(level == lv)[0] for lv in range(len(per_level))]
    keep = nms_per_group(boxes, scores, groups, rpn.nms_thresh)[: rpn.post_nms_top_n()]
    return boxes[keep]


def roi_detections(roi_heads: Any, feats: dict[str, Tensor], proposals: Tensor, image_size: Tensor,
                   input_size: tuple[int, int]) -> dict[str, Tensor]:
    """Detections of one image, as ``RoIHeads.forward`` in eval mode (``postprocess_detections`` + masks).

    Class-specific boxes decoded from the proposals and clipped to ``image_size``, background dropped, scores >
    ``score_thresh``, boxes with a side < 0.01 px dropped, class-wise NMS, the first ``detections_per_img``;
    with a mask head, the mask probabilities of each detection's class.

    Args:
        roi_heads: the head's ``RoIHeads`` (eval mode).
        feats: the RoI levels, name -> (1, C, H_l, W_l).
        proposals: (P, 4) float32 xyxy input pixels.
        image_size: (2,) int64 ``[h, w]``.
        input_size: the padded input ``(H, W)`` (passed to the poolers, which do not use it).
    Returns:
        ``boxes`` (K, 4) float32 xyxy input pixels, ``scores`` (K,), ``labels`` (K,) int64 in [0, num_classes)
        and, with a mask head, ``roi_masks`` (K, M, M) float32 probabilities over the boxes (M = 28).
    """
    shapes = [input_size]
    x = roi_heads.box_head(roi_heads.box_roi_pool(feats, [proposals], shapes))
    class_logits, box_regression = roi_heads.box_predictor(x)  # (P, K + 1), (P, 4 (K + 1))
    n = proposals.shape[0]
    boxes = roi_heads.box_coder.decode_single(box_regression.reshape(n, -1), proposals).reshape(n, -1, 4)
    boxes = clip_to_size(boxes, image_size)[:, 1:].reshape(-1, 4)
    scores = torch.softmax(class_logits, -1)
    labels = torch.arange(scores.shape[1]).view(1, -1).expand_as(scores)[:, 1:].reshape(-1)
    scores = scores[:, 1:].reshape(-1)
    keep = scores > roi_heads.score_thresh
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = not_small(boxes, 1e-2)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = nms_class_offsets(boxes, scores, labels, roi_heads.nms_thresh)[: roi_heads.detections_per_img]
    out = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep] - 1}
    if roi_heads.has_mask():
        x = roi_heads.mask_head(roi_heads.mask_roi_pool(feats, [out["boxes"]], shapes))
        logits = roi_heads.mask_predictor(x)  # (K, num_classes + 1, M, M)
        out["roi_masks"] = logits.sigmoid()[torch.arange(logits.shape[0]), labels[keep]]
    return out
