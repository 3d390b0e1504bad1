"""Cross-IoU loss (LSNet spec §4.2): the spec's worked vectors and independent re-computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lsvr_lsnet.config import CrossIoULossConfig
from lsvr_lsnet.encoding import encode_cross_targets
from lsvr_lsnet.losses.cross_iou import CrossIoULoss, build_cross_iou

ANCHOR = torch.tensor([[10.0, 10.0]])
# t, l, b, r, c of the §4.2 example
LANDMARKS = torch.tensor([[[11.0, 6.0], [7.0, 10.5], [10.5, 15.0], [14.0, 9.5], [10.5, 10.5]]])
GT_BOX = torch.tensor([[7.0, 6.0, 14.0, 15.0]])
OFFSETS = LANDMARKS - ANCHOR[:, None]


def test_spec_encoded_targets() -> None:
    expected = torch.tensor([[4, 0.8, 0.2, 1], [0.1, 0.5, 3, 0.6], [1, 5, 0.1, 0.5], [0.5, 0.1, 0.8, 4],
                             [0.1, 0.5, 0.1, 0.5]])
    torch.testing.assert_close(encode_cross_targets(OFFSETS)[0], expected)


@pytest.mark.parametrize(("factor", "expected"), [((1.1, 0.9, 1.0, 1.2), 0.104465), ((1.001,) * 4, 0.000999)])
def test_spec_bbox_vectors(factor: tuple[float, ...], expected: float) -> None:
    pred = encode_cross_targets(OFFSETS) * torch.tensor(factor)
    loss = CrossIoULoss("bbox")(pred, OFFSETS, anchors=ANCHOR, gt_boxes=GT_BOX)
    assert loss.item() == pytest.approx(expected, abs=5e-7)


def test_bbox_loss_is_invariant_to_the_normalisation_term() -> None:
    pred = encode_cross_targets(OFFSETS) * torch.tensor((1.1, 0.9, 1.0, 1.2))
    s = 4 * 16.0  # point_base_scale * stride (§4.1)
    loss = CrossIoULoss("bbox")(pred / s, OFFSETS / s, anchors=ANCHOR / s, gt_boxes=GT_BOX / s)
    assert loss.item() == pytest.approx(0.104465, abs=5e-6)


def test_spec_keypoint_vector() -> None:
    # 3 keypoints with visibility 2, 1, 0 + centre, perfect prediction -> 2/8 from the unlabelled keypoint
    offsets = OFFSETS[:, [0, 1, 2, 4]]
    vis = torch.tensor([[2, 1, 0, 0]]) > 0  # the centre's flag is ignored (never masked)
    loss = CrossIoULoss("keypoint")(encode_cross_targets(offsets), offsets, visibility=vis)
    assert loss.item() == pytest.approx(0.25, abs=1e-7)


def _numpy_polygon_loss(pred: np.ndarray, tgt: np.ndarray, anchor: np.ndarray, box: np.ndarray) -> float:
    """Independent re-derivation of §4.2 (b) + penalty for one location."""
    k = pred.shape[0]
    ratios = []
    for i in range(9):
        idx = list(range(i, k, 9))
        ratios.append(np.minimum(pred[idx], tgt[idx]).sum() / np.maximum(pred[idx], tgt[idx]).sum())
    o = float(np.mean(ratios))
    xy = []
    for up, down, left, right in pred[:-1]:
        xy.append((anchor[0] + (-left if left >= right else right), anchor[1] + (-up if up >= down else down)))
    xy = np.array(xy)
    bp = np.array([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])
    rho2 = (((bp[:2] + bp[2:]) / 2 - (box[:2] + box[2:]) / 2) ** 2).sum()
    c2 = ((np.maximum(bp[2:], box[2:]) - np.minimum(bp[:2], box[:2])) ** 2).sum() + 1e-6
    v = 4 / math.pi**2 * (math.atan((box[2] - box[0]) / (box[3] - box[1] + 1e-6))
                          - math.atan((bp[2] - bp[0]) / (bp[3] - bp[1] + 1e-6))) ** 2
    return 1 - o + rho2 / c2 + v**2 / (1 - o + v + 1e-6)


def test_polygon_matches_numpy_rederivation() -> None:
    gen = torch.Generator().manual_seed(1)
    offsets = torch.randn(3, 37, 2, generator=gen) * 3
    anchors = torch.randn(3, 2, generator=gen)
    boxes = torch.cat([(anchors[:, None] + offsets[:, :-1]).amin(1), (anchors[:, None] + offsets[:, :-1]).amax(1)], 1)
    pred = encode_cross_targets(offsets) * torch.rand(3, 37, 4, generator=gen).add(0.5)
    loss = CrossIoULoss("polygon")(pred, offsets, avg_factor=1.0, anchors=anchors, gt_boxes=boxes)
    tgt = encode_cross_targets(offsets)
    expected = sum(_numpy_polygon_loss(pred[i].double().numpy(), tgt[i].double().numpy(),
                                       anchors[i].double().numpy(), boxes[i].double().numpy()) for i in range(3))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_perfect_prediction_is_finite_and_zero() -> None:
    # O = 1 and v = 0 give 0/0 in the reference; the eps keeps it finite (§4.2 hazard)
    pred = encode_cross_targets(OFFSETS).requires_grad_()
    loss = CrossIoULoss("bbox")(pred, OFFSETS, anchors=ANCHOR, gt_boxes=GT_BOX)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(pred.grad).all()


def test_weights_and_avg_factor() -> None:
    pred = encode_cross_targets(OFFSETS).repeat(2, 1, 1) * torch.tensor([[[1.1, 0.9, 1.0, 1.2]], [[1.001] * 4]])
    offsets, anchors, boxes = OFFSETS.repeat(2, 1, 1), ANCHOR.repeat(2, 1), GT_BOX.repeat(2, 1)
    loss = CrossIoULoss("bbox", loss_weight=2.0)
    out = loss(pred, offsets, torch.tensor([1.0, 0.0]), avg_factor=4.0, anchors=anchors, gt_boxes=boxes)
    assert out.item() == pytest.approx(2.0 * 0.104465 / 4.0, abs=1e-6)


def test_empty_input_gives_attached_zero() -> None:
    pred = torch.zeros(0, 5, 4, requires_grad=True)
    out = CrossIoULoss("bbox")(pred, torch.zeros(0, 5, 2), avg_factor=1.0, anchors=torch.zeros(0, 2),
                               gt_boxes=torch.zeros(0, 4))
    assert out.item() == 0.0 and out.requires_grad


def test_factory_needs_a_loss_type() -> None:
    from lsvr_core.errors import ConfigError

    with pytest.raises(ConfigError, match="loss_type"):
        build_cross_iou(CrossIoULossConfig())
    assert build_cross_iou(CrossIoULossConfig(loss_type="polygon", loss_weight=2.0)).loss_weight == 2.0
