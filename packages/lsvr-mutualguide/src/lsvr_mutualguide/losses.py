"""Losses of MutualGuide: Balanced L1 (v1 and v2 regression), the v2 Varifocal-like + Poly-1 classification
loss and SIoU (spec §4, §7).

Same call convention as lsvr-core's losses: ``forward(pred, target, weight=None, avg_factor=None) -> scalar``;
the element-wise loss is multiplied by ``weight``, summed and divided by ``avg_factor`` (mean when it is
None), then scaled by ``loss_weight``. The v1 classification loss is lsvr-core's ``focal`` with
alpha 0.25, gamma 1.0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_core.api import Registry, weight_reduce
from lsvr_mutualguide.config import BalancedL1LossConfig, SIoULossConfig, VarifocalPolyLossConfig


def balanced_l1(diff: Tensor, alpha: float = 0.5, gamma: float = 1.5, beta: float = 0.11) -> Tensor:
    """Element-wise Balanced L1 of a difference (Libra R-CNN; spec §4).

    With b = e^(gamma / alpha) - 1: for |x| < beta, (alpha / b)(b|x| + 1) ln(b|x| / beta + 1) - alpha|x|;
    otherwise gamma|x| + gamma / b - alpha beta. The two pieces meet continuously at |x| = beta.
    """
    x = diff.abs()
    b = math.exp(gamma / alpha) - 1
    inner = alpha / b * (b * x + 1) * torch.log(b * x / beta + 1) - alpha * x
    outer = gamma * x + gamma / b - alpha * beta
    return torch.where(x < beta, inner, outer)


class BalancedL1Loss(nn.Module):
    """Balanced L1 on encoded offsets: ``pred``, ``target`` (N, 4); ``weight`` (N,) or (N, 4)."""

    def __init__(self, alpha: float = 0.5, gamma: float = 1.5, beta: float = 0.11, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.beta, self.loss_weight = alpha, gamma, beta, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = balanced_l1(pred - target.to(pred.dtype), self.alpha, self.gamma, self.beta)
        return self.loss_weight * weight_reduce(loss, weight, avg_factor)


class VarifocalPolyLoss(nn.Module):
    """The v2 classification loss ("GFocalLoss" of HEAD, Varifocal-like; spec §7).

    ``pred``: (N, C) logits; ``target``: (N, C) soft targets q in [0, 1] (the IoU at the positive's class, 0
    elsewhere). Element-wise BCE(pred, q) weighted by q where q > 0 and by neg_alpha p^gamma where q = 0, plus
    a Poly-1 term poly_eps (1 - p_t)^(gamma + 1) with p_t = p where q > 0 and 1 - p elsewhere.
    """

    def __init__(self, neg_alpha: float = 0.75, gamma: float = 2.0, poly_eps: float = 1.0, loss_weight: float = 2.0
                 ) -> None:
        super().__init__()
        self.neg_alpha, self.gamma, self.poly_eps, self.loss_weight = neg_alpha, gamma, poly_eps, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        q = target.to(pred.dtype)
        p = pred.sigmoid()
        pos = q > 0
        focal_weight = torch.where(pos, q, self.neg_alpha * p.detach().pow(self.gamma))
        bce = F.binary_cross_entropy_with_logits(pred, q, reduction="none")
        p_t = torch.where(pos, p, 1 - p)
        loss = bce * focal_weight + self.poly_eps * (1 - p_t).pow(self.gamma + 1)
        return self.loss_weight * weight_reduce(loss, weight, avg_factor)


def siou(pred: Tensor, target: Tensor, theta: float = 4.0, eps: float = 1e-7) -> Tensor:
    """Element-wise SIoU loss (Gevorgyan 2022): 1 - IoU + (distance cost + shape cost) / 2.

    Args:
        pred, target: (N, 4) xyxy pixels.
    Returns:
        (N,) loss; the angle cost cos(2 arcsin(sin a) - pi / 2) uses the smaller of the two centre-offset
        angles, the distance cost sum_t (1 - exp(-(2 - angle) rho_t)) with rho_t the centre offset over the
        enclosing box side, the shape cost sum_t (1 - exp(-|w - w_g| / max(w, w_g)))^theta.
    """
    w1, h1 = (pred[:, 2] - pred[:, 0]).clamp(min=eps), (pred[:, 3] - pred[:, 1]).clamp(min=eps)
    w2, h2 = (target[:, 2] - target[:, 0]).clamp(min=eps), (target[:, 3] - target[:, 1]).clamp(min=eps)
    iw = (torch.minimum(pred[:, 2], target[:, 2]) - torch.maximum(pred[:, 0], target[:, 0])).clamp(min=0)
    ih = (torch.minimum(pred[:, 3], target[:, 3]) - torch.maximum(pred[:, 1], target[:, 1])).clamp(min=0)
    inter = iw * ih
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    cw = torch.maximum(pred[:, 2], target[:, 2]) - torch.minimum(pred[:, 0], target[:, 0])
    ch = torch.maximum(pred[:, 3], target[:, 3]) - torch.minimum(pred[:, 1], target[:, 1])
    dx = (target[:, 0] + target[:, 2] - pred[:, 0] - pred[:, 2]) / 2
    dy = (target[:, 1] + target[:, 3] - pred[:, 1] - pred[:, 3]) / 2
    dist = torch.sqrt(dx**2 + dy**2) + eps
    sin_x, sin_y = dx.abs() / dist, dy.abs() / dist
    sin_alpha = torch.where(sin_x > math.sqrt(2) / 2, sin_y, sin_x)
    angle = torch.cos(2 * torch.arcsin(sin_alpha.clamp(max=1.0)) - math.pi / 2)
    g = 2 - angle
    distance = (1 - torch.exp(-g * (dx / (cw + eps)) ** 2)) + (1 - torch.exp(-g * (dy / (ch + eps)) ** 2))
    omega_w = (w1 - w2).abs() / torch.maximum(w1, w2)
    omega_h = (h1 - h2).abs() / torch.maximum(h1, h2)
    shape = (1 - torch.exp(-omega_w)).pow(theta) + (1 - torch.exp(-omega_h)).pow(theta)
    return 1 - iou + (distance + shape) / 2


class SIoULoss(nn.Module):
    """SIoU on decoded boxes: ``pred``, ``target`` (N, 4) xyxy pixels; ``weight`` (N,)."""

    def __init__(self, theta: float = 4.0, loss_weight: float = 2.0) -> None:
        super().__init__()
        self.theta, self.loss_weight = theta, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if pred.numel() == 0:
            return pred.sum() * self.loss_weight
        return self.loss_weight * weight_reduce(siou(pred, target.to(pred.dtype), self.theta), weight, avg_factor)


def build_balanced_l1(cfg: BalancedL1LossConfig, *, registry: Registry | None = None) -> BalancedL1Loss:
    """Factory of the ``balanced_l1`` loss."""
    return BalancedL1Loss(cfg.alpha, cfg.gamma, cfg.beta, cfg.loss_weight)


def build_varifocal_poly(cfg: VarifocalPolyLossConfig, *, registry: Registry | None = None) -> VarifocalPolyLoss:
    """Factory of the ``varifocal_poly`` loss."""
    return VarifocalPolyLoss(cfg.neg_alpha, cfg.gamma, cfg.poly_eps, cfg.loss_weight)


def build_siou(cfg: SIoULossConfig, *, registry: Registry | None = None) -> SIoULoss:
    """Factory of the ``siou`` loss."""
    return SIoULoss(cfg.theta, cfg.loss_weight)
