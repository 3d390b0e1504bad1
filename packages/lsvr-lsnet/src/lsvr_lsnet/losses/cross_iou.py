"""Cross-IoU loss (LSNet spec §4.2) with its three aggregations and the CIoU-style penalty."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lsvr_core.api import Registry
from lsvr_lsnet.config import CrossIoULossConfig
from lsvr_lsnet.encoding import decode_cross_vectors, encode_cross_targets, landmarks_to_boxes

LOSS_TYPES = ("bbox", "polygon", "keypoint")


def cross_iou_overlap(pred: Tensor, target: Tensor, loss_type: str, *, group_stride: int = 9,
                      visibility: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """Cross-IoU ``O`` per location.

    Args:
        pred: (N, K, 4) non-negative predicted (up, down, left, right).
        target: (N, K, 4) encoded targets (:func:`~lsvr_lsnet.encoding.encode_cross_targets`).
        loss_type: ``bbox`` — one ratio sum(min)/sum(max) over all K x 4 components; ``polygon`` — the same ratio
            within the groups {k : k mod group_stride = i}, averaged over the groups; ``keypoint`` — a 1-D ratio per
            landmark and axis, masked by ``visibility`` and averaged over all 2K entries.
        group_stride: number of interleaved polygon groups.
        visibility: (N, K) bool/float, keypoint type only; 1 where labelled. The last (centre) landmark is
            always counted; None counts every landmark.
        eps: lower bound of every denominator.
    Returns:
        (N,) float in [0, 1].
    Source: LSNet spec §4.2 (a)-(c).
    """
    lo, hi = torch.minimum(pred, target), torch.maximum(pred, target)  # (N, K, 4)
    if loss_type == "bbox":
        return lo.sum(dim=(1, 2)) / hi.sum(dim=(1, 2)).clamp(min=eps)
    if loss_type == "polygon":
        k = pred.shape[1]
        groups = [torch.arange(i, k, group_stride, device=pred.device) for i in range(min(group_stride, k))]
        ratios = [lo[:, g].sum(dim=(1, 2)) / hi[:, g].sum(dim=(1, 2)).clamp(min=eps) for g in groups]
        return torch.stack(ratios, dim=1).mean(dim=1)
    if loss_type == "keypoint":
        n, k, _ = pred.shape
        lo2, hi2 = lo.view(n, k, 2, 2).sum(-1), hi.view(n, k, 2, 2).sum(-1).clamp(min=eps)  # (N, K, [y, x])
        per_axis = lo2 / hi2
        if visibility is not None:
            vis = visibility.to(per_axis.dtype).clone()
            vis[:, -1] = 1.0  # the centre landmark is never masked
            per_axis = per_axis * vis[..., None]
        return per_axis.sum(dim=(1, 2)) / (2 * k)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def ciou_penalty(pred: Tensor, anchors: Tensor, gt_boxes: Tensor, overlap: Tensor, box_from: str,
                 eps: float = 1e-6) -> Tensor:
    """The CIoU-style penalty ``rho^2 / c^2 + v^2 / (1 - O + v)`` on boxes decoded from the prediction.

    Args:
        pred: (N, K, 4) predicted cross vectors, normalised units.
        anchors: (N, 2) xy anchor points, same units.
        gt_boxes: (N, 4) xyxy GT boxes, same units.
        overlap: (N,) cross-IoU ``O``; the trade-off ``v / (1 - O + v)`` is not detached (as the reference).
        box_from: ``extreme`` (bbox type) or ``minmax`` (polygon type), see
            :func:`~lsvr_lsnet.encoding.landmarks_to_boxes`.
        eps: added to c^2 and the heights as in the reference, and to ``1 - O + v`` against 0/0.
    Returns:
        (N,) float.
    Source: LSNet spec §4.2 (penalty term; the reference has no guard for O = 1, v = 0).
    """
    boxes = landmarks_to_boxes(anchors[:, None, :] + decode_cross_vectors(pred), box_from)  # (N, 4)
    centre_p = (boxes[:, :2] + boxes[:, 2:]) / 2
    centre_g = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    rho2 = ((centre_p - centre_g) ** 2).sum(dim=1)
    enclose = torch.maximum(boxes[:, 2:], gt_boxes[:, 2:]) - torch.minimum(boxes[:, :2], gt_boxes[:, :2])
    c2 = (enclose**2).sum(dim=1) + eps
    w_p, h_p = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1] + eps
    w_g, h_g = gt_boxes[:, 2] - gt_boxes[:, 0], gt_boxes[:, 3] - gt_boxes[:, 1] + eps
    v = (4 / math.pi**2) * (torch.atan(w_g / h_g) - torch.atan(w_p / h_p)) ** 2
    return rho2 / c2 + v**2 / (1 - overlap + v + eps)


class CrossIoULoss(nn.Module):
    """``L = 1 - O (+ CIoU-style penalty for bbox/polygon)``, reduced as ``sum(L * weight) / avg_factor``.

    All inputs share one normalised unit (the head divides pixels by ``point_base_scale * stride``, §4.1).

    Args:
        loss_type: ``bbox``, ``polygon`` or ``keypoint`` (§4.2 (a)-(c)).
        alpha: opposite-direction target fraction for :func:`~lsvr_lsnet.encoding.encode_cross_targets`.
        group_stride: polygon groups.
        eps: guard of ratios and of the penalty's denominator.
        loss_weight: final multiplier.
    Raises:
        ValueError: unknown ``loss_type``.
    """

    def __init__(self, loss_type: str = "bbox", alpha: float = 0.2, group_stride: int = 9, eps: float = 1e-6,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        self.loss_type, self.alpha, self.group_stride = loss_type, alpha, group_stride
        self.eps, self.loss_weight = eps, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None, *, anchors: Tensor | None = None,
                gt_boxes: Tensor | None = None, visibility: Tensor | None = None) -> Tensor:
        """Args:
            pred: (N, K, 4) non-negative predicted (up, down, left, right), normalised units.
            target: (N, K, 2) GT offsets (dx, dy) = landmark - anchor, normalised units (encoded here).
            weight: (N,) per-location weight (None: 1).
            avg_factor: normaliser of the sum (the number of positives); None gives the mean.
            anchors: (N, 2) xy anchors — needed by bbox/polygon (penalty).
            gt_boxes: (N, 4) xyxy GT boxes — needed by bbox/polygon (penalty).
            visibility: (N, K) keypoint type: 1 where the keypoint is labelled.
        Returns:
            scalar; an exact 0 still attached to ``pred`` when N = 0.
        Raises:
            ValueError: bbox/polygon without ``anchors`` or ``gt_boxes``.
        """
        if pred.shape[0] == 0:
            return pred.sum() * 0.0
        encoded = encode_cross_targets(target, self.alpha)
        overlap = cross_iou_overlap(pred, encoded, self.loss_type, group_stride=self.group_stride,
                                    visibility=visibility, eps=self.eps)
        loss = 1 - overlap
        if self.loss_type != "keypoint":
            if anchors is None or gt_boxes is None:
                raise ValueError(f"cross_iou loss_type {self.loss_type!r} needs anchors and gt_boxes (penalty term)")
            box_from = "extreme" if self.loss_type == "bbox" else "minmax"
            loss = loss + ciou_penalty(pred, anchors, gt_boxes, overlap, box_from, self.eps)
        if weight is not None:
            loss = loss * weight
        reduced = loss.mean() if avg_factor is None else loss.sum() / avg_factor
        return self.loss_weight * reduced


def build_cross_iou(cfg: CrossIoULossConfig, *, registry: Registry | None = None) -> CrossIoULoss:
    """Factory of the ``cross_iou`` loss (``loss_type`` must be set; heads fill it in by task).

    Raises:
        lsvr_core.errors.ConfigError: ``loss_type`` is None.
    """
    if cfg.loss_type is None:
        from lsvr_core.api import ConfigError

        raise ConfigError("cross_iou: loss_type is None; set bbox, polygon or keypoint (an LSNet head sets it by task)")
    return CrossIoULoss(cfg.loss_type, cfg.alpha, cfg.group_stride, cfg.eps, cfg.loss_weight)
