"""Gaussian radius, heatmap drawing, focal loss and peak decoding against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from lsvr_centernet.decode import decode
from lsvr_centernet.losses import CenterNetFocalLoss
from lsvr_centernet.targets import build_targets, draw_gaussian, gaussian_radius


def test_gaussian_radius_reference_rule() -> None:
    # 10 x 10 cells, IoU 0.7: the third case wins, (b3 + sqrt(b3^2 - 4 a3 c3)) / 2 with a3 = 2.8, b3 = -28,
    # c3 = -30: (-28 + sqrt(1120)) / 2
    assert gaussian_radius(10, 10, 0.7) == pytest.approx((-28 + math.sqrt(1120)) / 2)
    assert int(gaussian_radius(10, 10)) == 2
    # 4 x 20: a3 = 2.8, b3 = -1.4 * 24 = -33.6, c3 = -0.3 * 80 = -24
    assert gaussian_radius(4, 20) == pytest.approx((-33.6 + math.sqrt(33.6**2 + 4 * 2.8 * 24)) / 2)


def test_draw_gaussian_values_and_borders() -> None:
    hm = torch.zeros(6, 8)
    draw_gaussian(hm, 1, 0, 2)  # sigma = 5 / 6, clipped at the top and left border
    assert hm[0, 1] == 1.0
    assert hm[0, 2].item() == pytest.approx(math.exp(-1 / (2 * (5 / 6) ** 2)))
    assert hm[2, 3].item() == pytest.approx(math.exp(-8 / (2 * (5 / 6) ** 2)))
    assert hm[3, 1] == 0 and hm[0, 4] == 0  # outside the 5 x 5 window
    draw_gaussian(hm, 2, 0, 0)  # radius 0: a single 1, max with what is there
    assert hm[0, 2] == 1.0


def test_build_targets_cells_sizes_offsets() -> None:
    boxes = [torch.tensor([[8.0, 4.0, 24.0, 20.0]]), torch.zeros(0, 4)]
    centres = [torch.tensor([[16.0, 12.0]]), torch.zeros(0, 2)]
    tg = build_targets(boxes, centres, [torch.tensor([2]), torch.zeros(0, dtype=torch.long)], 3, (8, 8), 8)
    # centre (16, 12) / 8 = (2, 1.5): cell (x 2, y 1), offset (0, 0.5); size (16, 16) / 8 = (2, 2)
    assert tg.batch_index.tolist() == [0] and tg.xs.tolist() == [2] and tg.ys.tolist() == [1]
    assert tg.offset.tolist() == [[0.0, 0.5]] and tg.size.tolist() == [[2.0, 2.0]]
    assert tg.heatmap[0, 2, 1, 2] == 1 and tg.heatmap[0, :2].sum() == 0 and tg.heatmap[1].sum() == 0
    assert tg.heatmap[0, 2].eq(1).sum() == 1  # radius int(gaussian_radius(2, 2)) = 0: a single peak


def test_focal_loss_hand_computed() -> None:
    logits = torch.zeros(1, 1, 1, 3)  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    loss = CenterNetFocalLoss()(logits, target)
    # pos: -log(.5) * .5^2; near-peak negative: -log(.5) * .5^2 * (1 - .5)^4; far negative: -log(.5) * .5^2
    want = math.log(2) * 0.25 * (1 + 0.5**4 + 1)
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_decode_peak_to_box_and_round_trip() -> None:
    heat = torch.full((2, 6, 8), -10.0)
    heat[1, 3, 5] = 5.0
    heat[1, 3, 6] = 4.0  # a lower neighbour: suppressed by the 3x3 max-pool
    size = torch.zeros(2, 6, 8)
    offset = torch.zeros(2, 6, 8)
    size[:, 3, 5] = torch.tensor([4.0, 2.0])
    offset[:, 3, 5] = torch.tensor([0.5, 0.25])
    pred = decode(heat, size, offset, 4, (24, 32), image_id=9, top_k=3)
    # centre ((5 + 0.5) * 4, (3 + 0.25) * 4) = (22, 13), size (16, 8)
    assert pred.boxes[0].tolist() == [14.0, 9.0, 30.0, 17.0] and pred.labels[0] == 1 and pred.image_id == 9
    assert pred.scores[0].item() == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())
    assert pred.scores[1].item() < 1e-3  # the neighbour (4.0) is no peak

    boxes = torch.tensor([[3.0, 5.0, 19.0, 15.0], [40.0, 8.0, 60.0, 40.0]])
    tg = build_targets([boxes], [(boxes[:, :2] + boxes[:, 2:]) / 2], [torch.tensor([0, 1])], 2, (12, 16), 4)
    logits = torch.where(tg.heatmap[0] == 1, 10.0, -10.0)
    size, offset = torch.zeros(2, 12, 16), torch.zeros(2, 12, 16)
    size[:, tg.ys, tg.xs] = tg.size.T
    offset[:, tg.ys, tg.xs] = tg.offset.T
    back = decode(logits, size, offset, 4, (48, 64), image_id=0, top_k=2)
    order = back.labels.argsort()
    torch.testing.assert_close(back.boxes[order], boxes)
