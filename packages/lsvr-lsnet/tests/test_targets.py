"""Per-task ground-truth landmarks (LSNet spec §1, §3, §11.6-7) and the valid-point rule (§3)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lsvr_core.errors import DataError
from lsvr_core.structures import Targets
from lsvr_lsnet.targets import border_midpoints, grid_points, prepare_gt, valid_points

sys.path.insert(0, str(Path(__file__).parent))
from lsnet_helpers import diamond_targets  # noqa: E402


def test_bbox_landmarks_are_extremes_plus_box_centre_and_crowd_is_dropped() -> None:
    t = diamond_targets(3, (64, 64), [[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 9.0, 9.0]], [2, 1], crowd=[False, True])
    gt = prepare_gt(t, "bbox")
    assert len(gt) == 1 and gt.labels.tolist() == [2]
    assert gt.landmarks.tolist() == [[[5.0, 0.0], [0.0, 10.0], [5.0, 20.0], [10.0, 10.0], [5.0, 10.0]]]


def test_segm_box_is_the_contour_box() -> None:
    t = diamond_targets(0, (64, 64), [[0.0, 0.0, 10.0, 20.0]], [0])
    t.boxes = torch.tensor([[-5.0, -5.0, 30.0, 30.0]])  # annotation box differs from the contour's
    gt = prepare_gt(t, "segm")
    assert gt.boxes.tolist() == [[0.0, 0.0, 10.0, 20.0]]
    assert gt.landmarks.shape == (1, 37, 2) and gt.landmarks[0, -1].tolist() == [5.0, 10.0]


def test_pose_bbox_branches() -> None:
    t = diamond_targets(0, (64, 64), [[0.0, 0.0, 10.0, 20.0]], [0])
    gt = prepare_gt(t, "pose_bbox")
    assert gt.landmarks.shape == (1, 18, 2) and gt.visibility.shape == (1, 18)
    assert gt.visibility[0].tolist() == [i % 2 == 0 for i in range(17)] + [True]
    assert gt.box_landmarks[0].tolist() == border_midpoints(t.boxes)[0].tolist() + [[5.0, 10.0]]


def test_pose_kbox_box_from_labelled_keypoints_and_persons_without_keypoints_dropped() -> None:
    kps = torch.zeros(2, 17, 3)
    kps[0, 0] = torch.tensor([10.0, 20.0, 2.0])
    kps[0, 5] = torch.tensor([30.0, 5.0, 1.0])
    kps[0, 6] = torch.tensor([100.0, 100.0, 0.0])  # unlabelled: ignored by the box
    t = Targets(torch.tensor([[0.0, 0.0, 50.0, 50.0], [0.0, 0.0, 60.0, 60.0]]), torch.tensor([0, 0]), 0, (64, 64),
                (64, 64), keypoints=kps)
    gt = prepare_gt(t, "pose_kbox")
    assert len(gt) == 1
    assert gt.boxes.tolist() == [[10.0, 5.0, 30.0, 20.0]]
    assert gt.landmarks[0, -1].tolist() == [20.0, 12.5]


def test_missing_field_is_a_data_error() -> None:
    t = Targets(torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([0]), 7, (8, 8), (8, 8))
    with pytest.raises(DataError, match="image 7.*extreme_points"):
        prepare_gt(t, "bbox")


def test_grid_points_and_valid_points() -> None:
    sizes, strides = [(20, 20), (10, 10), (5, 5)], [8, 16, 32]
    points, point_strides, levels = grid_points(sizes, strides, torch.device("cpu"))
    assert points.shape == (525, 2) and points[21].tolist() == [8.0, 8.0]  # row-major, no half-stride offset
    assert points[400 + 11].tolist() == [16.0, 16.0] and point_strides[400].item() == 16 and levels[400].item() == 4
    # image 100 x 60 padded to 128 x 64: stride 8 -> 16 x 8 valid cells, stride 16 -> 8 x 4 (clipped to 10 x 10)
    valid = valid_points((100, 60), sizes, strides, 32, torch.device("cpu"))
    assert int(valid[:400].sum()) == 16 * 8 and int(valid[400:500].sum()) == 8 * 4 and int(valid[500:].sum()) == 4 * 2
    assert valid[:400].view(20, 20)[15, 7] and not valid[:400].view(20, 20)[16, 0]
