"""The traceable selection and NMS of ``lsvr export --postprocess`` against torchvision's ``batched_nms``
applied after a score threshold (the eager order)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

from lsvr_core.api import nms_keep, topk_pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_then_threshold_equals_threshold_then_nms(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = 400
    xy = torch.rand(n, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=gen) * 30], 1)
    scores = torch.rand(n, generator=gen)
    labels = torch.randint(0, 3, (n,), generator=gen)
    ok = (scores > 0.4).nonzero().squeeze(1)
    want = ok[batched_nms(boxes[ok], scores[ok], labels[ok], 0.5)][:25]
    got = nms_keep(boxes, scores, labels, iou_thr=0.5, score_thr=0.4, max_dets=25)
    assert len(want) == 25
    assert got.tolist() == want.tolist()


def test_nms_keep_can_return_nothing() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 9.0, 9.0]])
    assert nms_keep(boxes, torch.tensor([0.1, 0.2]), torch.zeros(2, dtype=torch.int64), iou_thr=0.5, score_thr=0.5,
                    max_dets=10).numel() == 0


def test_topk_pairs_are_the_best_location_class_pairs() -> None:
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    top, loc, label = topk_pairs(scores, 3)
    assert top.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert loc.tolist() == [0, 1, 2] and label.tolist() == [1, 0, 1]
    assert topk_pairs(scores, 100)[0].numel() == 6  # clipped to M * C
