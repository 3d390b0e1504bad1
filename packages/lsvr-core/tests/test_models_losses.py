"""Built-in losses against hand-computed values and torchvision / torch functionals."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from lsvr_core.builtin.configs import FocalLossConfig, GIoULossConfig, L1LossConfig, SmoothL1LossConfig
from lsvr_core.models.losses import build_focal, build_giou, build_l1, build_smooth_l1


def test_focal_hand_values():
    loss = build_focal(FocalLossConfig(alpha=0.25, gamma=2.0))
    # logit 0 -> p = 0.5; positive: 0.25 * 0.5^2 * ln 2; negative: 0.75 * 0.5^2 * ln 2
    pos = loss(torch.zeros(1, 1), torch.ones(1, 1), avg_factor=1.0)
    neg = loss(torch.zeros(1, 1), torch.zeros(1, 1), avg_factor=1.0)
    assert pos.item() == pytest.approx(0.25 * 0.25 * math.log(2), rel=1e-6)
    assert neg.item() == pytest.approx(0.75 * 0.25 * math.log(2), rel=1e-6)


def test_focal_integer_labels_and_torchvision():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=g)
    labels = torch.tensor([0, 2, -1, 3, 1])  # -1 and 3 (= num_classes) are background
    onehot = torch.zeros(5, 3)
    onehot[0, 0] = onehot[1, 2] = onehot[4, 1] = 1
    expected = sigmoid_focal_loss(logits, onehot, 0.25, 2.0, reduction="sum") / 3
    loss = build_focal(FocalLossConfig(loss_weight=1.0))
    torch.testing.assert_close(loss(logits, labels, avg_factor=3), expected)
    torch.testing.assert_close(loss(logits, onehot, avg_factor=3), expected)
    weighted = build_focal(FocalLossConfig(loss_weight=0.5))(logits, onehot)  # mean without avg_factor
    torch.testing.assert_close(weighted, 0.5 * sigmoid_focal_loss(logits, onehot, reduction="mean"))


def test_giou_hand_value():
    # inter 1, union 7, enclosing 9: GIoU = 1/7 - 2/9
    pred, target = torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3]])
    loss = build_giou(GIoULossConfig(loss_weight=2.0))
    assert loss(pred, target).item() == pytest.approx(2 * (1 - (1 / 7 - 2 / 9)), rel=1e-6)
    two = torch.cat([pred, pred]), torch.cat([target, target])
    w = torch.tensor([1.0, 0.0])
    assert loss(*two, weight=w, avg_factor=1).item() == pytest.approx(2 * (1 - (1 / 7 - 2 / 9)), rel=1e-6)
    empty = loss(torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4))
    assert empty.item() == 0 and empty.requires_grad


def test_l1_and_smooth_l1_hand_values():
    pred, target = torch.tensor([[0.05, 1.0], [2.0, -1.0]]), torch.zeros(2, 2)
    l1 = build_l1(L1LossConfig())
    assert l1(pred, target).item() == pytest.approx((0.05 + 1 + 2 + 1) / 4)
    assert l1(pred, target, weight=torch.tensor([1.0, 0.0]), avg_factor=2).item() == pytest.approx(1.05 / 2)
    sl1 = build_smooth_l1(SmoothL1LossConfig(beta=0.1, loss_weight=3.0))
    per = [0.5 * 0.05**2 / 0.1, 1 - 0.05, 2 - 0.05, 1 - 0.05]
    assert sl1(pred, target, avg_factor=1).item() == pytest.approx(3 * sum(per), rel=1e-6)
