"""Corner point verification (LSNet spec §5): corner pooling against a naive loop, the CornerNet radius and the
heatmap assigner against hand-computed values, the two losses against their formulas, corner snapping, and
lsvr-core's conformance suites on the head, the assigner and the losses."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from lsvr_core.contracts import ShapeSpec
from lsvr_core.plugins import get_plugin_manager
from lsvr_core.testing.suites import check_assigner, check_head, check_loss
from lsvr_data.fields import EXTREME_POINTS
from lsvr_lsnet.assigners.point_hm import PointHeatmapAssigner, gaussian_radius
from lsvr_lsnet.config import (
    GaussianFocalLossConfig,
    LSCPVHeadConfig,
    PointHeatmapAssignerConfig,
    SEPFocalLossConfig,
)
from lsvr_lsnet.cpv.corner_pool import CornerPoolBlock, corner_pool
from lsvr_lsnet.cpv.criterion import semantic_targets
from lsvr_lsnet.cpv.snap import heatmap_level, snap_corners
from lsvr_lsnet.losses.corner import GaussianFocalLoss, SEPFocalLoss

sys.path.insert(0, str(Path(__file__).parent))
from lsnet_helpers import batch as lsnet_batch  # noqa: E402

SHAPE = {f"p{lv}": ShapeSpec(32, 2**lv) for lv in range(3, 8)}


def naive_pool(x: torch.Tensor, direction: str) -> torch.Tensor:
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            if direction == "top":
                out[..., i, j] = x[..., i:, j].amax(-1)
            elif direction == "bottom":
                out[..., i, j] = x[..., : i + 1, j].amax(-1)
            elif direction == "left":
                out[..., i, j] = x[..., i, j:].amax(-1)
            else:
                out[..., i, j] = x[..., i, : j + 1].amax(-1)
    return out


@pytest.mark.parametrize("direction", ["top", "left", "bottom", "right"])
def test_corner_pool_matches_a_naive_loop(direction: str) -> None:
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = corner_pool(x, direction)
    torch.testing.assert_close(out, naive_pool(x.detach(), direction), rtol=0, atol=0)
    out.sum().backward()  # each output takes its value from exactly one input element
    assert x.grad.sum() == out.numel() and (x.grad >= 0).all()
    with pytest.raises(ValueError, match="direction"):
        corner_pool(x, "up")


def test_corner_pool_block_shapes_and_directions() -> None:
    block = CornerPoolBlock(32, 16, ("top", "left"), norm_groups=8)
    y = block(torch.randn(1, 32, 6, 9))
    assert y.shape == (1, 32, 6, 9) and (y >= 0).all()  # ends in ReLU


def test_gaussian_radius_hand_computed() -> None:
    # h = w = 100, IoU 0.7: r1 = (200 - sqrt(200² - 4·3000/1.7)) / 2, r2 = (400 - sqrt(400² - 16·3000)) / 8,
    # r3 = (-280 + sqrt(280² + 4·2.8·3000)) / 5.6 -> 9.2504, 8.1675, 9.7606: the min is r2
    r = gaussian_radius(torch.tensor([100.0]), torch.tensor([100.0]), 0.7)
    assert r.item() == pytest.approx((400 - math.sqrt(400**2 - 16 * 3000)) / 8, rel=1e-6)
    assert r.item() == pytest.approx(8.1675, abs=1e-3)


def test_point_heatmap_assigner_positives_offsets_and_bumps() -> None:
    # one level, stride 8, an 8 x 8 grid; a 100 x 100 box with corners at (21, 13) and (121, 113)
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], 1) * 8
    strides = torch.full((64,), 8.0)
    box = torch.tensor([[21.0, 13.0, 121.0, 113.0]])
    tl, br = PointHeatmapAssigner(True, 0.7)(points, strides, box)
    nearest = 2 * 8 + 3  # (24, 16) is nearest to (21, 13)
    assert tl.positive.nonzero().flatten().tolist() == [nearest]
    torch.testing.assert_close(tl.offset[nearest], torch.tensor([-3 / 8, -3 / 8]))
    r = (400 - math.sqrt(400**2 - 16 * 3000)) / 8
    sigma = (2 * r + 1) / 6
    d2 = (16 - 21) ** 2 + (16 - 13) ** 2  # point (16, 16): distance sqrt(34) < r
    assert tl.heatmap[2 * 8 + 2].item() == pytest.approx(math.exp(-d2 / (2 * sigma**2)), rel=1e-5)
    assert tl.heatmap[0].item() == 0.0  # (0, 0): distance 24.7 > r
    # the bottom-right corner lies outside the grid: its nearest point is the grid corner (56, 56)
    assert br.positive.nonzero().flatten().tolist() == [63]
    torch.testing.assert_close(br.offset[63], torch.tensor([65 / 8, 57 / 8]))


def test_gaussian_focal_loss_formula() -> None:
    p = torch.tensor([0.9, 0.2, 0.6])
    y = torch.tensor([1.0, 0.5, 0.0])
    expected = (-math.log(0.9) * 0.1**2 - math.log(0.8) * 0.2**2 * 0.5**4 - math.log(0.4) * 0.6**2) / 2
    loss = GaussianFocalLoss(2.0, 4.0)(p, y, avg_factor=2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_sep_focal_loss_formula() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    weight = torch.tensor([0.25, 0.75, 9.0, 9.0])
    p = torch.sigmoid(logits).tolist()
    pos = (0.25 * 0.25 * (1 - p[0]) ** 2 * -math.log(p[0]) + 0.25 * 0.75 * (1 - p[1]) ** 2 * -math.log(p[1])) / 1.0
    neg = (0.75 * p[2] ** 2 * -math.log(1 - p[2]) + 0.75 * p[3] ** 2 * -math.log(1 - p[3])) / 2
    loss = SEPFocalLoss(0.25, 2.0)(logits, target, weight, avg_factor=2)
    assert loss.item() == pytest.approx(pos + neg, rel=1e-5)
    assert SEPFocalLoss()(logits, torch.zeros(4), weight, avg_factor=2).item() == pytest.approx(
        sum(0.75 * q**2 * -math.log(1 - q) for q in p) / 2, rel=1e-5)


def test_semantic_targets_paint_larger_boxes_first() -> None:
    b = lsnet_batch(64, 64)
    target, weight = semantic_targets(b, num_classes=2)
    assert target.shape == (2, 2, 8, 8)
    # image 0: box [4, 6, 40, 50] class 0 -> cells x 0..5, y 0..6; box [30, 20, 60, 44] class 1 -> x 3..7, y 2..5
    assert target[0, 0, :7, :6].all() and target[0, 0].sum() == 42
    assert target[0, 1, 2:6, 3:8].all() and target[0, 1].sum() == 20
    assert weight[0, 0, 0, 0].item() == pytest.approx(1 / (36 * 44))


def test_snap_corners_moves_coarse_boxes_to_the_heatmap_peak() -> None:
    strides = [8, 16, 32]
    scores = [torch.full((2, 8, 8), -5.0), torch.full((2, 4, 4), -5.0), torch.full((2, 2, 2), -5.0)]
    offsets = [torch.zeros(4, 8, 8), torch.zeros(4, 4, 4), torch.zeros(4, 2, 2)]
    scores[0][0, 3, 2] = 5.0  # top-left peak at cell (x 2, y 3) of the stride-8 heatmap
    offsets[0][0:2, 3, 2] = torch.tensor([0.25, 0.5])
    scores[0][1, 6, 6] = 5.0  # bottom-right peak at (6, 6)
    boxes = torch.tensor([[17.0, 20.0, 50.0, 52.0], [17.0, 20.0, 50.0, 52.0]])
    out = snap_corners(boxes, torch.tensor([0, 1]), scores, offsets, strides, (60, 60))
    torch.testing.assert_close(out[0], boxes[0])  # level 0 is never snapped
    # top-left: floor((17, 20) / 8) = (2, 2); window rows 2-3, cols 2-3 holds the peak (2, 3) -> (2.25, 3.5) * 8
    # bottom-right: floor((50, 52) / 8) = (6, 6); its window's max is the peak (6, 6) -> (48, 48)
    torch.testing.assert_close(out[1], torch.tensor([18.0, 28.0, 48.0, 48.0]))
    assert [heatmap_level(lv) for lv in range(5)] == [None, 0, 0, 1, 1]


def test_lscpv_head_conformance() -> None:
    cfg = LSCPVHeadConfig(feat_channels=32, norm_groups=8, stacked_convs=1, conv_module="plain", corner_dim=16,
                          score_thr=0.0)
    head = check_head(get_plugin_manager().get("head", "lscpv"), cfg, SHAPE, num_classes=3, task="bbox",
                      extra_fields=(EXTREME_POINTS,))
    assert head.cls_fusion.weight.shape == (32, 38, 3, 3)  # C + 6 corner channels (§5)


def test_point_hm_assigner_and_losses_conformance() -> None:
    points = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="xy"), -1).view(-1, 2) * 8
    gt = torch.tensor([[10.0, 10.0, 60.0, 50.0], [30.0, 5.0, 120.0, 90.0]])
    check_assigner(get_plugin_manager().get("assigner", "point_hm"), PointHeatmapAssignerConfig(),
                   lambda a: [t.heatmap for t in a(points, torch.full((256,), 8.0), gt)])
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(20, generator=gen)
    target[3] = 1.0
    check_loss(get_plugin_manager().get("loss", "gaussian_focal"), GaussianFocalLossConfig(loss_weight=0.25),
               (torch.rand(20, generator=gen) * 0.98 + 0.01, target), empty_inputs=(torch.zeros(0), torch.zeros(0)))
    sem_target = (torch.rand(20, generator=gen) > 0.7).float()
    spec = get_plugin_manager().get("loss", "sep_focal")
    check_loss(lambda c, **kw: _BoundSEP(spec.load()(c, **kw), sem_target), SEPFocalLossConfig(loss_weight=0.1),
               (torch.randn(20, generator=gen),), empty_inputs=(torch.zeros(0),))


class _BoundSEP(torch.nn.Module):
    """SEP focal with fixed targets / weights: its avg_factor divides only the negative term (by design)."""

    def __init__(self, loss: torch.nn.Module, target: torch.Tensor) -> None:
        super().__init__()
        self.loss, self.target = loss, target

    @property
    def loss_weight(self) -> float:
        return self.loss.loss_weight

    def forward(self, pred: torch.Tensor) -> torch.Tensor:
        t = self.target[: len(pred)]
        return self.loss(pred, t, torch.full_like(t, 0.01), avg_factor=max(int(t.sum()), 1))
