"""RoI assignment and sampling of one cascade stage (mmdet ``MaxIoUAssigner`` with pos = neg = min-pos IoU
threshold t, ``RandomSampler`` with ground truth added as proposals; LESA spec §4.2), over torchvision's
``box_iou`` and ``BalancedPositiveNegativeSampler``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.ops import box_iou


@dataclass
class StageSamples:
    """Sampled RoIs of one image.

    Attributes:
        boxes: (R, 4) xyxy input pixels, positives first.
        labels: (R,) int64, 0 background, k + 1 for class k.
        matched: (R,) int64 index of the matched ground truth (meaningful where ``labels > 0``).
        is_gt: (R,) bool, the RoI is a ground-truth box added as a proposal.
    """

    boxes: Tensor
    labels: Tensor
    matched: Tensor
    is_gt: Tensor


def sample_rois(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, iou_thresh: float,
                sampler: BalancedPositiveNegativeSampler) -> StageSamples:
    """Assign proposals (N, 4) plus the ground truth (G, 4) to the ground truth by IoU and sample.

    A RoI is positive (label ``gt_labels[j]``, already shifted so background is 0) when its best IoU with
    any ground truth j is >= ``iou_thresh``, negative otherwise; ``sampler`` keeps at most
    ``batch_size_per_image`` of them with at most ``positive_fraction`` positives, uniformly at random.
    """
    boxes = torch.cat([proposals, gt_boxes])
    is_gt = torch.cat([torch.zeros(len(proposals), dtype=torch.bool, device=boxes.device),
                       torch.ones(len(gt_boxes), dtype=torch.bool, device=boxes.device)])
    if len(gt_boxes):
        best, matched = box_iou(gt_boxes, boxes).max(0)  # (N + G,)
        labels = torch.where(best >= iou_thresh, gt_labels[matched], torch.zeros_like(matched))
    else:
        matched = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
        labels = matched.clone()
    pos_mask, neg_mask = sampler([(labels > 0).to(torch.int64)])
    keep = torch.cat([torch.where(pos_mask[0])[0], torch.where(neg_mask[0])[0]])
    return StageSamples(boxes[keep], labels[keep], matched[keep], is_gt[keep])
