"""lsvr-core's conformance suites on the LSNet head (every task), its assigners and the cross-IoU loss."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.contracts import ShapeSpec
from lsvr_core.plugins import get_plugin_manager
from lsvr_core.testing.suites import check_assigner, check_head, check_loss
from lsvr_data.fields import CONTOURS, EXTREME_POINTS
from lsvr_lsnet.config import ATSSAssignerConfig, CentroidAssignerConfig, CrossIoULossConfig, LSNetHeadConfig
from lsvr_lsnet.encoding import encode_cross_targets

SHAPE = {f"p{lv}": ShapeSpec(32, 2**lv) for lv in range(3, 8)}


@pytest.mark.parametrize("task", ["bbox", "segm", "pose_bbox", "pose_kbox"])
def test_head_conformance(task: str) -> None:
    cfg = LSNetHeadConfig(feat_channels=32, norm_groups=8, stacked_convs=1, conv_module="plain", score_thr=0.0)
    num_classes = 1 if task.startswith("pose") else 3
    check_head(get_plugin_manager().get("head", "lsnet"), cfg, SHAPE, num_classes=num_classes, task=task,
               extra_fields=(EXTREME_POINTS, CONTOURS))


def test_assigner_conformance() -> None:
    gt = torch.tensor([[10.0, 10.0, 60.0, 50.0], [30.0, 5.0, 120.0, 90.0]])
    points = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="xy"), -1).view(-1, 2) * 8
    levels = torch.full((256,), 3)
    check_assigner(get_plugin_manager().get("assigner", "centroid"), CentroidAssignerConfig(),
                   lambda a: a(points, levels, gt))
    boxes = torch.cat([points - 20, points + 20], dim=1).requires_grad_()
    check_assigner(get_plugin_manager().get("assigner", "atss"), ATSSAssignerConfig(),
                   lambda a: a(boxes, [256], gt))


@pytest.mark.parametrize("loss_type", ["bbox", "polygon", "keypoint"])
def test_loss_conformance(loss_type: str) -> None:
    k = {"bbox": 5, "polygon": 37, "keypoint": 18}[loss_type]
    gen = torch.Generator().manual_seed(0)
    offsets = torch.randn(6, k, 2, generator=gen)
    pred = encode_cross_targets(offsets) * torch.rand(6, k, 4, generator=gen).add(0.5)
    anchors = torch.randn(6, 2, generator=gen)
    lm = anchors[:, None] + offsets[:, :-1]
    boxes = torch.cat([lm.amin(1), lm.amax(1)], dim=1)
    cfg = CrossIoULossConfig(loss_type=loss_type, loss_weight=2.0)
    spec = get_plugin_manager().get("loss", "cross_iou")
    check_loss(lambda c, registry=None: _Bound(spec.load()(c, registry=registry), anchors, boxes), cfg, (pred, offsets),
               empty_inputs=(pred[:0], offsets[:0]))


class _Bound(torch.nn.Module):
    """The cross-IoU loss with its keyword-only geometry bound, for the positional conformance suite."""

    def __init__(self, loss: torch.nn.Module, anchors: torch.Tensor, boxes: torch.Tensor) -> None:
        super().__init__()
        self.loss, self.anchors, self.boxes = loss, anchors, boxes

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                avg_factor: float | None = None) -> torch.Tensor:
        n = len(pred)
        return self.loss(pred, target, weight, avg_factor, anchors=self.anchors[:n], gt_boxes=self.boxes[:n])
