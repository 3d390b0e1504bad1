"""The auxiliary losses of CPV: Gaussian focal loss on corner heatmaps and the separate focal loss of the
semantic (foreground) branch (LSNet spec §5 "Targets/losses", §4.4 table)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_core.api import weight_reduce
from lsvr_lsnet.config import GaussianFocalLossConfig, SEPFocalLossConfig


class GaussianFocalLoss(nn.Module):
    """CornerNet's focal loss for Gaussian heatmap targets.

    Element-wise, with p = probability and y = target in [0, 1]:
    ``-log(p + eps) (1 - p)^alpha [y == 1]  -  log(1 - p + eps) p^alpha (1 - y)^gamma``,
    then ``sum(loss * weight) / avg_factor`` (times ``loss_weight``).

    Args:
        alpha: exponent of the prediction term (2).
        gamma: exponent of the target term of negatives (4).
        loss_weight: factor on the result (0.25 in CPV).
    Forward: pred (M,) probabilities (sigmoid already applied), target (M,), weight (M,) or None,
        avg_factor the number of positive corners. Returns a scalar.
    Source: LSNet spec §5 (reference ``gaussian_focal_loss.py``, eps 1e-12).
    """

    def __init__(self, alpha: float = 2.0, gamma: float = 4.0, loss_weight: float = 1.0, eps: float = 1e-12) -> None:
        super().__init__()
        self.alpha, self.gamma, self.loss_weight, self.eps = alpha, gamma, loss_weight, eps

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        pos = -(pred + self.eps).log() * (1 - pred).pow(self.alpha) * target.eq(1)
        neg = -(1 - pred + self.eps).log() * pred.pow(self.alpha) * (1 - target).pow(self.gamma)
        return self.loss_weight * weight_reduce(pos + neg, weight, avg_factor)


class SEPFocalLoss(nn.Module):
    """"Separate" sigmoid focal loss of the semantic branch (RepPoints v2).

    With p = sigmoid(logit): positives (target == 1) contribute ``alpha (1 - p)^gamma (-log p) w`` summed and
    divided by the sum of their weights w (1 / box area); negatives (target < 1) contribute
    ``(1 - alpha) p^gamma (-log(1 - p))`` summed and divided by ``avg_factor`` (the number of positive pixels).
    Without positives only the negative term remains. Times ``loss_weight``.

    Forward: pred (M,) logits, target (M,) in {0, 1}, weight (M,) per-pixel weights, avg_factor. Returns a scalar.
    Source: LSNet spec §5 "Semantic loss" (reference ``focal_loss.py`` ``separate_sigmoid_focal_loss``).
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.loss_weight = alpha, gamma, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor, avg_factor: float | Tensor) -> Tensor:
        p = pred.sigmoid()
        pos, neg = target.eq(1), target.lt(1)
        # -log(1 - sigmoid(x)) = softplus(x) and -log(sigmoid(x)) = softplus(-x): the same values, finite everywhere
        neg_loss = (F.softplus(pred[neg]) * p[neg].pow(self.gamma) * (1 - self.alpha)).sum() / avg_factor
        if not pos.any():
            return self.loss_weight * neg_loss
        w = weight[pos]
        pos_loss = (F.softplus(-pred[pos]) * (1 - p[pos]).pow(self.gamma) * w * self.alpha).sum() / w.sum()
        return self.loss_weight * (pos_loss + neg_loss)


def build_gaussian_focal(cfg: GaussianFocalLossConfig, *, registry: object = None) -> GaussianFocalLoss:
    """Factory of the ``gaussian_focal`` loss."""
    return GaussianFocalLoss(cfg.alpha, cfg.gamma, cfg.loss_weight)


def build_sep_focal(cfg: SEPFocalLossConfig, *, registry: object = None) -> SEPFocalLoss:
    """Factory of the ``sep_focal`` loss."""
    return SEPFocalLoss(cfg.alpha, cfg.gamma, cfg.loss_weight)
