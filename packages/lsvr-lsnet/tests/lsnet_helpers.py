"""Small builders shared by the lsvr-lsnet tests (hand-made targets and features)."""

from __future__ import annotations

import math

import torch

from lsvr_core.contracts import ShapeSpec
from lsvr_core.structures import Batch, Targets
from lsvr_data.fields import CONTOURS, EXTREME_POINTS
from lsvr_lsnet.encoding import extreme_points_to_boxes

LEVELS = ("p3", "p4", "p5", "p6", "p7")


def input_shape(channels: int = 16) -> dict[str, ShapeSpec]:
    return {name: ShapeSpec(channels, 2 ** (3 + i)) for i, name in enumerate(LEVELS)}


def features(batch: int, height: int, width: int, channels: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch, channels, math.ceil(height / 2 ** (3 + i)), math.ceil(width / 2 ** (3 + i)),
                              generator=gen) for i, name in enumerate(LEVELS)}


def diamond_targets(image_id: int, size: tuple[int, int], boxes: list[list[float]], labels: list[int],
                    crowd: list[bool] | None = None) -> Targets:
    """Targets of diamond-shaped objects: extreme points at the box's border mid-points, a 36-point contour on
    the diamond, and 17 keypoints on the contour (every second one labelled)."""
    b = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    hw, hh = (b[:, 2] - b[:, 0]) / 2, (b[:, 3] - b[:, 1]) / 2
    t = torch.linspace(0, 1, 37)[:-1]
    # diamond parametrised from the top, counter-clockwise in image coordinates (top, left, bottom, right)
    corners = torch.stack([torch.stack([cx, cy - hh], 1), torch.stack([cx - hw, cy], 1), torch.stack([cx, cy + hh], 1),
                           torch.stack([cx + hw, cy], 1)], 1)  # (N, 4, 2)
    seg = (t * 4).floor().long().clamp(max=3)
    frac = (t * 4 - seg)[None, :, None]
    contours = corners[:, seg] + (corners[:, (seg + 1) % 4] - corners[:, seg]) * frac  # (N, 36, 2)
    kps = torch.cat([contours[:, ::2][:, :17], torch.zeros(len(b), 17, 1)], dim=2)
    kps[:, ::2, 2] = 2.0
    iscrowd = torch.tensor(crowd if crowd is not None else [False] * len(b), dtype=torch.bool)
    assert torch.allclose(extreme_points_to_boxes(corners), b)
    t = Targets(b, torch.tensor(labels, dtype=torch.long), image_id, size, size, iscrowd=iscrowd, keypoints=kps)
    t.extras.add(EXTREME_POINTS, corners)
    t.extras.add(CONTOURS, contours)
    return t


def batch(height: int = 64, width: int = 64) -> Batch:
    t0 = diamond_targets(0, (height, width), [[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 60.0, 44.0]], [0, 1])
    t1 = diamond_targets(1, (height - 8, width - 16), [[10.0, 10.0, 30.0, 40.0]], [1])
    return Batch(torch.zeros(2, 3, height, width), [t0, t1])
