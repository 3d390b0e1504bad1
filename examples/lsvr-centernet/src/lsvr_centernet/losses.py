"""CenterNet's penalty-reduced focal loss (paper eq. 1) and the L1 fallback used without a registry."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lsvr_centernet.config import CenterNetFocalLossConfig
from lsvr_core.api import L1LossConfig, weight_reduce

_EPS = 1e-4  # the reference clamps sigmoid outputs to [1e-4, 1 - 1e-4]


class CenterNetFocalLoss(nn.Module):
    """``L = -1/N sum_xyc { (1 - p)^a log p  if Y = 1;  (1 - Y)^b p^a log(1 - p)  otherwise }``.

    ``forward(logits, target, avg_factor=None)``: ``logits`` (B, C, H, W) float heatmap logits, ``target``
    (B, C, H, W) float Gaussian heatmap in [0, 1] with exactly 1 at object centres. ``N`` is ``avg_factor`` or,
    when None, the number of centres (at least 1). Returns a scalar times ``loss_weight``.
    Source: Zhou et al. 2019, §3 eq. (1), alpha = 2, beta = 4.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 4.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.beta, self.loss_weight = alpha, beta, loss_weight

    def forward(self, logits: Tensor, target: Tensor, avg_factor: float | Tensor | None = None) -> Tensor:
        p = logits.float().sigmoid().clamp(_EPS, 1 - _EPS)
        target = target.float()
        pos = target.eq(1).float()
        pos_term = torch.log(p) * (1 - p).pow(self.alpha) * pos
        neg_term = torch.log(1 - p) * p.pow(self.alpha) * (1 - target).pow(self.beta) * (1 - pos)
        n = pos.sum().clamp(min=1) if avg_factor is None else avg_factor
        return -self.loss_weight * (pos_term.sum() + neg_term.sum()) / n


class L1Loss(nn.Module):
    """``loss_weight * sum(|pred - target| * weight) / avg_factor`` (mean without one), as lsvr's ``l1``."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        return self.loss_weight * weight_reduce((pred - target.to(pred.dtype)).abs(), weight, avg_factor)


def build_centernet_focal(cfg: CenterNetFocalLossConfig, *, registry: object = None) -> CenterNetFocalLoss:
    """Loss factory."""
    del registry
    return CenterNetFocalLoss(cfg.alpha, cfg.beta, cfg.loss_weight)


def build_default_loss(cfg: object) -> nn.Module:
    """The head's losses when no registry is given (unit tests): ``centernet_focal`` and ``l1`` only."""
    if isinstance(cfg, CenterNetFocalLossConfig):
        return build_centernet_focal(cfg)
    if isinstance(cfg, L1LossConfig):
        return L1Loss(cfg.loss_weight)
    raise TypeError(f"loss {getattr(cfg, 'type', cfg)!r} needs the registry (build the head through lsvr)")
