"""In-graph decoding (``lsvr export --postprocess``, :mod:`lsvr_mutualguide.export`) against the eager
``MutualGuideHead._predict_image`` on random boxes and scores: same detections for class-wise NMS with and
without ``pre_nms_topk`` and for v2's agnostic NMS."""

from __future__ import annotations

import types

import pytest
import torch

from lsvr_core.structures import Targets
from lsvr_mutualguide.export import decode_in_graph
from lsvr_mutualguide.head import MutualGuideHead


def fake_head(nms: str, pre_nms_topk: int | None, num_classes: int) -> types.SimpleNamespace:
    head = types.SimpleNamespace(nms=nms, pre_nms_topk=pre_nms_topk, score_thresh=0.3, nms_thresh=0.5,
                                 detections_per_img=40, num_classes=num_classes)
    head._predict_agnostic = lambda boxes, scores, meta: MutualGuideHead._predict_agnostic(head, boxes, scores, meta)
    return head


@pytest.mark.parametrize(("nms", "pre_nms_topk"), [("classwise", 50), ("classwise", None), ("agnostic", None)])
def test_in_graph_decoding_equals_eager(nms: str, pre_nms_topk: int | None) -> None:
    gen = torch.Generator().manual_seed(0)
    a, c = 600, 4
    xy = torch.rand(a, 2, generator=gen) * 140 - 10
    boxes = torch.cat([xy, xy + 5 + torch.rand(a, 2, generator=gen) * 40], 1)  # some leave the 90 x 120 image
    scores = torch.rand(a, c, generator=gen) ** 3
    head = fake_head(nms, pre_nms_topk, c)
    meta = Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 3, (90, 120), (90, 120))
    want = MutualGuideHead._predict_image(head, boxes, scores, meta)
    got = decode_in_graph(head, boxes, scores, torch.tensor([90, 120]))
    assert len(want) > 10
    torch.testing.assert_close(got["boxes"], want.boxes)
    torch.testing.assert_close(got["scores"], want.scores)
    assert got["labels"].tolist() == want.labels.tolist()
