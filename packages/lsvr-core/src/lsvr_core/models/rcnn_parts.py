"""Pieces shared by the two-stage heads (``mask_rcnn``, ``htc``) that make torchvision's R-CNN behave like
mmdet 2.x when asked to (LESA spec §4.1, §4.2): RoIAlign with ``aligned=True``, L1 (or any smooth-L1 beta)
box losses, a P6 made by max-pooling, mask targets cropped with the same RoIAlign as the features.

Everything defaults to torchvision's behaviour (``aligned=False``, smooth-L1 with beta 1/9).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, initLevelMapper

from lsvr_core.errors import DataError
from lsvr_core.structures import Batch


class RoIAlignPyramid(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` with given level strides and an ``aligned`` switch.

    ``forward(features {level: (B, C, H_l, W_l)}, boxes [ (N_i, 4) xyxy input pixels ], image_sizes)
    -> (sum N_i, C, S, S)``. A box of side ``sqrt(w h)`` goes to level ``floor(4 + log2(side / 224))`` clamped
    to the given levels (FPN eq. 1; identical to mmdet's ``floor(log2(side / 56))`` over P2..P5).

    Args:
        levels: feature names, fine to coarse.
        strides: their strides, pixels (scale ``1 / stride``).
        output_size: S.
        sampling_ratio: samples per bin side; 0 adaptive (mmdet's default).
        aligned: ``torchvision.ops.roi_align(..., aligned=True)``: pixel centres at +0.5 (mmdet 2.x / mmcv
            default); False is torchvision's Mask R-CNN.
    """

    def __init__(self, levels: tuple[str, ...], strides: list[int], output_size: int, sampling_ratio: int,
                 aligned: bool = False) -> None:
        super().__init__(list(levels), output_size, sampling_ratio)
        self.scales = [1.0 / s for s in strides]
        self.map_levels = initLevelMapper(int(math.log2(strides[0])), int(math.log2(strides[-1])))
        self.aligned = aligned

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        feats = _filter_input(x, self.featmap_names)
        rois = _convert_to_roi_format(boxes)  # (N, 5): batch index, xyxy
        assert self.scales is not None and self.map_levels is not None
        if len(feats) == 1:
            return roi_align(feats[0], rois, self.output_size, self.scales[0], self.sampling_ratio, self.aligned)
        levels = self.map_levels(boxes)
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], *self.output_size))  # shape[0]: traceable
        for level, (feature, scale) in enumerate(zip(feats, self.scales, strict=True)):
            idx = torch.where(levels == level)[0]
            out[idx] = roi_align(feature, rois[idx], self.output_size, scale, self.sampling_ratio,
                                 self.aligned).to(out.dtype)
        return out


def box_loss(pred: Tensor, target: Tensor, beta: float) -> Tensor:
    """Summed smooth-L1 (``beta > 0``) or L1 (``beta == 0``) loss, (N, 4) deltas -> scalar."""
    if beta == 0:
        return (pred - target).abs().sum()
    return F.smooth_l1_loss(pred, target, beta=beta, reduction="sum")


def maxpool_level(feature: Tensor) -> Tensor:
    """The extra pyramid level of mmdet's FPN without extra convs (and torchvision's ``LastLevelMaxPool``):
    ``max_pool2d(kernel 1, stride 2)``, (B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2))."""
    return F.max_pool2d(feature, 1, 2, 0)


class RPN(RegionProposalNetwork):
    """torchvision's RPN with the box-regression loss's smooth-L1 ``beta`` configurable (0: L1, mmdet's
    Mask R-CNN; 1/9: torchvision's and mmdet's HTC). Normalisation unchanged: sum over positives / sampled
    anchors."""

    def __init__(self, *args, box_beta: float = 1.0 / 9, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_beta = box_beta

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        pos, neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos))[0]
        sampled = torch.cat([pos, torch.where(torch.cat(neg))[0]])
        labels_all, targets = torch.cat(labels), torch.cat(regression_targets)
        loss_box = box_loss(pred_bbox_deltas[pos], targets[pos], self.box_beta) / sampled.numel()
        loss_cls = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels_all[sampled])
        return loss_cls, loss_box


def mask_targets(gt_masks: Tensor, boxes: Tensor, matched: Tensor, size: int, aligned: bool) -> Tensor:
    """Crop-and-resize ground-truth masks (K, H, W) to (N, size, size) float in [0, 1] over ``boxes`` (N, 4)
    xyxy input pixels of the matched instances ``matched`` (N,) (torchvision: ``aligned=False``; mmdet:
    bilinear with ``aligned=True``)."""
    rois = torch.cat([matched.to(boxes)[:, None], boxes], dim=1)
    return roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0, -1, aligned)[:, 0]


def mask_loss(mask_logits: Tensor, boxes: list[Tensor], gt_masks: list[Tensor], labels: list[Tensor],
              matched: list[Tensor], aligned: bool) -> Tensor:
    """Per-pixel binary cross-entropy of the class's mask logits (N, K, S, S) against the cropped targets,
    mean over pixels and RoIs (torchvision's ``maskrcnn_loss`` with the crop's ``aligned`` switch)."""
    size = mask_logits.shape[-1]
    targets = torch.cat([mask_targets(m, b, i, size, aligned) for m, b, i in zip(gt_masks, boxes, matched,
                                                                                  strict=True)])
    cls = torch.cat(labels)
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(mask_logits[torch.arange(len(cls), device=cls.device), cls], targets)


class RCNNRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` with the box loss's smooth-L1 ``beta`` (0: L1) and the mask-target crop's
    ``aligned`` switch configurable. Inference is torchvision's unchanged."""

    def __init__(self, *args, box_beta: float = 1.0 / 9, aligned: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_beta = box_beta
        self.aligned = aligned

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        assert targets is not None
        proposals, matched, labels, reg_targets = self.select_training_samples(proposals, targets)
        feats = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(feats)  # (R, K + 1), (R, 4 (K + 1))
        cls = torch.cat(labels)
        pos = torch.where(cls > 0)[0]
        deltas = box_regression.reshape(len(cls), -1, 4)[pos, cls[pos]]
        losses = {"loss_classifier": F.cross_entropy(class_logits, cls),
                  "loss_box_reg": box_loss(deltas, torch.cat(reg_targets)[pos], self.box_beta) / cls.numel()}
        if self.has_mask():
            keep = [torch.where(lab > 0)[0] for lab in labels]
            boxes = [p[k] for p, k in zip(proposals, keep, strict=True)]
            idxs = [m[k] for m, k in zip(matched, keep, strict=True)]
            logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_shapes)))
            gt_labels = [t["labels"][i] for t, i in zip(targets, idxs, strict=True)]
            losses["loss_mask"] = mask_loss(logits, boxes, [t["masks"] for t in targets], gt_labels, idxs,
                                            self.aligned)
        return [], losses




def rcnn_targets(batch: Batch, with_mask: bool, head: str) -> list[dict[str, Tensor]]:
    """torchvision-style targets of a two-stage head: non-crowd, non-degenerate instances, labels + 1 (0 is
    the background); ``masks`` (N, H, W) uint8 when ``with_mask``.

    Raises:
        DataError: ``with_mask`` and an image without instance masks (names ``head`` and the image).
    """
    out = []
    for t in batch.targets:
        t = t.non_crowd()
        keep = (t.boxes[:, 2] > t.boxes[:, 0]) & (t.boxes[:, 3] > t.boxes[:, 1])
        t = t.select(keep)
        target = {"boxes": t.boxes.float(), "labels": t.labels + 1}
        if with_mask:
            if t.masks is None:
                raise DataError(f"image {t.image_id}: task segm with head {head} needs instance masks; set "
                                f"with_masks: true in the dataset config")
            target["masks"] = t.masks
        out.append(target)
    return out
