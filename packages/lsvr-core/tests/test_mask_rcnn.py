"""Built-in Mask R-CNN head: conformance (bbox, segm), anchors vs torchvision's generator, RoIAlign scales,
crowd/degenerate instances removed from the targets, losses finite and decreasing on a tiny batch."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from lsvr_core.builtin.configs import FPNConfig, ResNetConfig
from lsvr_core.builtin.mask_rcnn_config import MaskRCNNHeadConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError, DataError
from lsvr_core.models.detector import Detector
from lsvr_core.models.fpn import build_fpn
from lsvr_core.models.mask_rcnn import StridedAnchorGenerator, build_mask_rcnn_head
from lsvr_core.models.resnet import build_resnet
from lsvr_core.testing import check_head, make_batch

torch.set_num_threads(1)
FACTORY = "lsvr_core.models.mask_rcnn:build_mask_rcnn_head"
SHAPE = {f"p{i}": ShapeSpec(64, 2**i) for i in range(2, 7)}
SMALL = MaskRCNNHeadConfig(representation_size=128, mask_head_channels=32, box_batch_size_per_image=64)


@pytest.mark.parametrize("task", ["segm", "bbox"])
def test_conformance(task: str) -> None:
    head = check_head(FACTORY, SMALL, SHAPE, task=task, image_size=(96, 160))
    assert (head.roi_heads.has_mask()) == (task == "segm")


def test_anchors_equal_torchvision_when_strides_divide_the_size() -> None:
    sizes, ratios = ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5
    ours = StridedAnchorGenerator(sizes, ratios, [4, 8, 16, 32, 64])
    ref = AnchorGenerator(sizes, ratios)
    images = ImageList(torch.zeros(2, 3, 128, 192), [(128, 192), (100, 150)])
    feats = [torch.zeros(2, 1, 128 // s, 192 // s) for s in (4, 8, 16, 32, 64)]
    for a, b in zip(ours(images, feats), ref(images, feats), strict=True):
        torch.testing.assert_close(a, b)
    # 96 x 160 padded input: P6 is 2 x 3; torchvision would infer stride 96 // 2 = 48 rows, ours keeps 64
    feats = [torch.zeros(1, 1, -(-96 // s), -(-160 // s)) for s in (4, 8, 16, 32, 64)]
    anchors = ours(ImageList(torch.zeros(1, 3, 96, 160), [(96, 160)]), feats)[0]
    p6 = anchors[-2 * 3 * 3:].view(2, 3, 3, 4)
    centres_y = (p6[:, 0, 1, 1] + p6[:, 0, 1, 3]) / 2
    torch.testing.assert_close(centres_y, torch.tensor([0.0, 64.0]))


def test_roi_pool_scales_come_from_strides() -> None:
    head = build_mask_rcnn_head(SMALL, SHAPE, 3, "segm")
    assert head.roi_heads.box_roi_pool.scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    assert head.roi_heads.mask_roi_pool.output_size == (14, 14)
    # FPN level mapping (canonical 224 px at level 4): a 224 px box goes to p4, a 56 px box to p2
    mapper = head.roi_heads.box_roi_pool.map_levels
    assert mapper([torch.tensor([[0.0, 0, 224, 224], [0, 0, 56, 56]])]).tolist() == [2, 0]


def test_targets_drop_crowd_and_degenerate_instances_and_shift_labels() -> None:
    head = build_mask_rcnn_head(SMALL, SHAPE, 3, "segm")
    batch = make_batch((96, 160), 3)
    t0 = batch.targets[0]
    t0.boxes[0, 2] = t0.boxes[0, 0]  # make instance 0 degenerate (zero width)
    targets = head._targets(batch)
    assert len(targets[0]["boxes"]) == 1  # instance 0 degenerate, instance 2 crowd
    torch.testing.assert_close(targets[0]["boxes"], t0.boxes[1:2])
    assert targets[0]["labels"].tolist() == [t0.labels[1].item() + 1]
    assert targets[0]["masks"].shape == (1, 96, 160) and len(targets[1]["boxes"]) == 0
    t0.masks = None
    with pytest.raises(DataError, match="with_masks: true"):
        head._targets(batch)


def test_bad_inputs_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="num_extra: 1"):
        build_mask_rcnn_head(SMALL, {k: v for k, v in SHAPE.items() if k != "p6"}, 3, "segm")
    with pytest.raises(ConfigError, match="supports tasks"):
        build_mask_rcnn_head(SMALL, SHAPE, 3, "pose_bbox")
    with pytest.raises(ValueError, match="one size per in_level"):
        MaskRCNNHeadConfig(anchor_sizes=(32, 64))


def test_losses_finite_and_decreasing_on_a_tiny_batch() -> None:
    """ResNet-18 + FPN (P2-P5 + P6 by a stride-2 conv on P5) + Mask R-CNN trained 15 steps on one batch."""
    torch.manual_seed(0)
    backbone = build_resnet(ResNetConfig(depth=18, norm="bn", norm_eval=False, frozen_stages=-1,
                                         out_levels=("c2", "c3", "c4", "c5")))
    neck = build_fpn(FPNConfig(out_channels=64, in_levels=("c2", "c3", "c4", "c5"), num_extra=1),
                     backbone.output_shape())
    assert list(neck.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    head = build_mask_rcnn_head(SMALL, neck.output_shape(), 3, "segm")
    model = Detector(backbone, neck, head, (123.7, 116.3, 103.5), (58.4, 57.1, 57.4)).train()
    batch = make_batch((96, 160), 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(15):
        losses = model(batch)
        assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box", "loss_mask"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert sum(totals[-3:]) / 3 < 0.7 * sum(totals[:3]) / 3, totals
    model.eval()
    with torch.no_grad():
        preds = model(batch)
    assert preds[0].masks is not None and preds[0].masks.shape[1:] == (96, 160)
