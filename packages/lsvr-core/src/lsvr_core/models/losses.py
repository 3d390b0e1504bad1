"""Built-in losses over torchvision / torch functionals: sigmoid focal, GIoU, L1 and smooth L1.

Every loss module has ``forward(pred, target, weight=None, avg_factor=None) -> scalar``: the element-wise
loss is multiplied by ``weight`` (broadcast to it), then reduced as ``sum / avg_factor`` when ``avg_factor``
is given (usually the number of positives) and as the mean otherwise, and finally scaled by ``loss_weight``.
An empty input gives a zero that still depends on ``pred`` (so the graph stays connected).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from lsvr_core.builtin.configs import FocalLossConfig, GIoULossConfig, L1LossConfig, SmoothL1LossConfig
from lsvr_core.contracts import Registry


def weight_reduce(loss: Tensor, weight: Tensor | None, avg_factor: float | Tensor | None) -> Tensor:
    """``sum(loss * weight) / avg_factor``, or ``mean(loss * weight)`` when ``avg_factor`` is None.

    Args:
        loss: element-wise loss, any shape.
        weight: broadcastable to ``loss`` (e.g. (N,) per box for an (N,) loss, or (N, 1) for (N, C)).
        avg_factor: normaliser of the sum (> 0), e.g. the number of positive samples.
    """
    if weight is not None:
        if weight.dim() == loss.dim() - 1:
            weight = weight.unsqueeze(-1)
        loss = loss * weight
    if loss.numel() == 0:
        return loss.sum()
    if avg_factor is None:
        return loss.mean()
    return loss.sum() / avg_factor


class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017) via ``torchvision.ops.sigmoid_focal_loss``.

    ``pred``: (N, C) float logits. ``target``: (N, C) float in [0, 1] (one-hot or soft), or (N,) int64 class
    indices where a value outside [0, C) (e.g. -1 or C) means background. ``weight``: (N,) or (N, C).
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.loss_weight = alpha, gamma, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if not target.is_floating_point():
            num_classes = pred.shape[-1]
            valid = (target >= 0) & (target < num_classes)
            onehot = F.one_hot(target.clamp(0, num_classes - 1), num_classes).to(pred.dtype)
            target = onehot * valid.unsqueeze(-1).to(pred.dtype)  # (N, C)
        loss = sigmoid_focal_loss(pred, target.to(pred.dtype), alpha=self.alpha, gamma=self.gamma, reduction="none")
        return self.loss_weight * weight_reduce(loss, weight, avg_factor)


class GIoULoss(nn.Module):
    """Generalised IoU loss ``1 - GIoU`` (Rezatofighi et al. 2019) via torchvision.

    ``pred``, ``target``: (N, 4) float xyxy pixels. ``weight``: (N,).
    """

    def __init__(self, eps: float = 1e-7, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.eps, self.loss_weight = eps, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if pred.numel() == 0:
            return pred.sum() * self.loss_weight
        loss = generalized_box_iou_loss(pred, target, reduction="none", eps=self.eps)  # (N,)
        return self.loss_weight * weight_reduce(loss, weight, avg_factor)


class L1Loss(nn.Module):
    """``|pred - target|`` element-wise; ``pred``, ``target``: same shape; ``weight`` broadcastable."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = F.l1_loss(pred, target.to(pred.dtype), reduction="none")
        return self.loss_weight * weight_reduce(loss, weight, avg_factor)


class SmoothL1Loss(nn.Module):
    """Smooth L1 (Huber / beta) loss: ``0.5 d^2 / beta`` if ``d < beta`` else ``d - 0.5 beta``, ``d = |pred -
    target|`` (``torch.nn.functional.smooth_l1_loss``); ``beta = 0`` is L1."""

    def __init__(self, beta: float = 1.0 / 9, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.beta, self.loss_weight = beta, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = F.smooth_l1_loss(pred, target.to(pred.dtype), reduction="none", beta=self.beta)
        return self.loss_weight * weight_reduce(loss, weight, avg_factor)


def build_focal(cfg: FocalLossConfig, *, registry: Registry | None = None) -> FocalLoss:
    """Factory of the ``focal`` loss."""
    return FocalLoss(cfg.alpha, cfg.gamma, cfg.loss_weight)


def build_giou(cfg: GIoULossConfig, *, registry: Registry | None = None) -> GIoULoss:
    """Factory of the ``giou`` loss."""
    return GIoULoss(cfg.eps, cfg.loss_weight)


def build_l1(cfg: L1LossConfig, *, registry: Registry | None = None) -> L1Loss:
    """Factory of the ``l1`` loss."""
    return L1Loss(cfg.loss_weight)


def build_smooth_l1(cfg: SmoothL1LossConfig, *, registry: Registry | None = None) -> SmoothL1Loss:
    """Factory of the ``smooth_l1`` loss."""
    return SmoothL1Loss(cfg.beta, cfg.loss_weight)


__all__ = ["FocalLoss", "GIoULoss", "L1Loss", "SmoothL1Loss", "weight_reduce", "build_focal", "build_giou",
           "build_l1", "build_smooth_l1"]
