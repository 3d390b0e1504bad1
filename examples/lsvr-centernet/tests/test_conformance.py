"""lsvr-core's conformance suites (lsvr_core.testing) on the CenterNet neck, head and loss."""

from __future__ import annotations

import torch

from lsvr_centernet.config import CenterNetFocalLossConfig, CenterNetHeadConfig, UpsampleNeckConfig
from lsvr_centernet.fields import CENTERS
from lsvr_core.api import ShapeSpec
from lsvr_core.testing import check_head, check_loss, check_neck

RESNET18 = {"c2": ShapeSpec(64, 4), "c3": ShapeSpec(128, 8), "c4": ShapeSpec(256, 16), "c5": ShapeSpec(512, 32)}


def test_neck_conformance() -> None:
    for lateral in (False, True):
        neck = check_neck("lsvr_centernet.neck:build_upsample_neck",
                          UpsampleNeckConfig(channels=(32, 16, 16), lateral=lateral), RESNET18)
        assert neck.output_shape() == {"p2": ShapeSpec(16, 4)}


def test_head_conformance_reads_its_declared_field() -> None:
    head = check_head("lsvr_centernet.head:build_centernet_head", CenterNetHeadConfig(head_channels=16),
                      {"p2": ShapeSpec(16, 4)}, extra_fields=(CENTERS,))
    assert set(head.losses) == {"loss_heatmap", "loss_size", "loss_offset"}


def test_loss_conformance() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    target = torch.rand(2, 3, 8, 8, generator=gen) * 0.9
    target[0, 1, 2, 3] = target[1, 0, 5, 5] = 1.0
    check_loss("lsvr_centernet.losses:build_centernet_focal", CenterNetFocalLossConfig(), (logits, target),
               empty_inputs=(logits[:0], target[:0]))
