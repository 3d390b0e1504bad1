"""Assigners on hand-built cases: centroid (LSNet spec §3.1) and ATSS over predicted boxes (§3.2)."""

from __future__ import annotations

import statistics

import pytest
import torch

from lsvr_core.plugins import get_plugin_manager
from lsvr_lsnet.assigners.atss import ATSSAssigner, box_overlaps
from lsvr_lsnet.assigners.centroid import CentroidAssigner, gt_levels
from lsvr_lsnet.config import ATSSAssignerConfig, CentroidAssignerConfig
from lsvr_lsnet.targets import grid_points


def square(side: float, cx: float = 300.0, cy: float = 300.0) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def test_level_mapping_of_spec() -> None:
    # §3.1 / issue 6: sqrt(wh) = 63, 64, 127, 128 px -> P3, P4, P4, P5
    boxes = torch.tensor([square(63), square(64), square(127), square(128), square(600), square(2)])
    assert gt_levels(boxes, 4.0, 3, 7).tolist() == [3, 4, 4, 5, 7, 3]
    # non-square: sqrt(32 * 128) = 64 -> P4
    assert gt_levels(torch.tensor([[0.0, 0.0, 32.0, 128.0]]), 4.0, 3, 7).tolist() == [4]


def _pyramid(size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    strides = [8, 16, 32, 64, 128]
    sizes = [(-(-size // s), -(-size // s)) for s in strides]
    points, _, levels = grid_points(sizes, strides, torch.device("cpu"))
    return points, levels


def test_centroid_picks_nearest_point_on_the_gt_level_only() -> None:
    points, levels = _pyramid()
    # sqrt(wh) = 100 -> P4 (stride 16); centre (101, 99): nearest P4 point is (96, 96), the P3 point (104, 96)
    # is closer but on the wrong level
    gt = torch.tensor([[51.0, 49.0, 151.0, 149.0]])
    assigned = CentroidAssigner(scale=4.0, pos_num=1)(points, levels, gt)
    pos = (assigned >= 0).nonzero().flatten()
    assert len(pos) == 1
    assert points[pos[0]].tolist() == [96.0, 96.0] and levels[pos[0]].item() == 4


def test_centroid_normalises_distance_by_box_size() -> None:
    points = torch.tensor([[0.0, 0.0], [4.0, 10.0]])
    levels = torch.full((2,), 3)
    # tall box (w 2, h 200) centred at (4, 0): euclidean distances 4 and 10 would pick point 0; normalised by
    # (w, h) they are |(-2, 0)| = 2 and |(0, 0.05)| = 0.05, so point 1 wins
    tall = torch.tensor([[3.0, -100.0, 5.0, 100.0]])
    assert CentroidAssigner()(points, levels, tall).tolist() == [-1, 0]


def test_centroid_shared_point_goes_to_the_nearer_gt() -> None:
    points = torch.tensor([[0.0, 0.0], [64.0, 64.0]])
    levels = torch.full((2,), 3)
    gts = torch.tensor([[-10.0, -10.0, 14.0, 14.0], [-12.0, -12.0, 12.0, 12.0]])  # both nearest to (0, 0)
    # normalised distances to (0, 0): gt0 centre (2, 2) -> 0.118; gt1 centre (0, 0) -> 0
    assert CentroidAssigner()(points, levels, gts).tolist() == [1, -1]


def test_centroid_pos_num_and_empty_inputs() -> None:
    points, levels = _pyramid(64)
    gt = torch.tensor([[10.0, 10.0, 40.0, 40.0]])
    assert int((CentroidAssigner(pos_num=3)(points, levels, gt) >= 0).sum()) == 3
    assert (CentroidAssigner()(points, levels, gt[:0]) == -1).all()


GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])


def test_box_overlaps_matches_torchvision() -> None:
    from torchvision.ops import box_iou

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(20, 2, generator=gen) * 50
    b = torch.rand(7, 2, generator=gen) * 50
    boxes_a = torch.cat([a, a + torch.rand(20, 2, generator=gen) * 30 + 1], 1)
    boxes_b = torch.cat([b, b + torch.rand(7, 2, generator=gen) * 30 + 1], 1)
    torch.testing.assert_close(box_overlaps(boxes_a, boxes_b), box_iou(boxes_a, boxes_b))


def test_atss_threshold_is_mean_plus_std_over_candidates() -> None:
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],  # IoU 1, centre inside
        [0.0, 0.0, 10.0, 5.0],  # IoU 0.5
        [5.0, 5.0, 15.0, 15.0],  # IoU 25/175, centre on the GT corner (not inside)
        [20.0, 20.0, 30.0, 30.0],  # IoU 0
    ])
    ious = [1.0, 0.5, 25 / 175, 0.0]
    thr = statistics.mean(ious) + statistics.stdev(ious)  # unbiased std, as torch.std
    expected = [0 if iou >= thr else -1 for iou in ious]
    assert expected == [0, -1, -1, -1]
    assert ATSSAssigner(topk=9)(boxes, [4], GT).tolist() == expected
    # two levels of 2 points: topk=2 still takes all four
    assert ATSSAssigner(topk=2)(boxes, [2, 2], GT).tolist() == expected
    # topk=1 per level keeps A (level 0) and B (level 1): thr = 0.75 + 0.354 > 1 -> no positive
    assert ATSSAssigner(topk=1)(boxes, [2, 2], GT).tolist() == [-1, -1, -1, -1]


def test_atss_centre_must_be_inside_the_gt() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 5.0], [0.0, 5.0, 10.0, 10.0], [-10.0, 0.0, 10.0, 10.0]])
    # all IoU 0.5 -> std 0, thr 0.5, all pass the IoU test; the last centre (0, 5) lies on the GT border
    assert ATSSAssigner()(boxes, [3], GT).tolist() == [0, 0, -1]


def test_atss_point_positive_for_two_gts_takes_the_higher_iou() -> None:
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 6.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 6.0], [0.0, 0.0, 10.0, 8.0]])
    # IoUs: box0 (1, 0.6), box1 (0.6, 1), box2 (0.8, 0.75)
    out = ATSSAssigner(topk=9)(boxes, [3], gts)
    for g in range(2):
        ious = box_overlaps(boxes, gts)[:, g].tolist()
        thr = statistics.mean(ious) + statistics.stdev(ious)
        assert [i for i, v in enumerate(ious) if v >= thr] == [g]
    assert out.tolist() == [0, 1, -1]


@pytest.mark.parametrize("cfg", [CentroidAssignerConfig(), ATSSAssignerConfig(topk=5)])
def test_assigners_are_registered_plugins(cfg: object) -> None:
    built = get_plugin_manager().build("assigner", cfg)
    assert callable(built)
