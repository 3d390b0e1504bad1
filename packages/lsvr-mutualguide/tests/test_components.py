"""Conformance of the backbones, necks, head and losses, RepVGG re-parameterisation, loss formulas and the
head's inference rule (spec §2, §4, §6, §7)."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import nms

from lsvr_core.builtin.configs import FocalLossConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.structures import Targets
from lsvr_core.testing.suites import check_backbone, check_head, check_loss, check_neck
from lsvr_mutualguide import config as c
from lsvr_mutualguide.head import MutualGuideHead
from lsvr_mutualguide.losses import balanced_l1, siou
from lsvr_mutualguide.repvgg import RepVGGBackbone, RepVGGBlock

torch.set_num_threads(1)
P = "lsvr_mutualguide"


@pytest.mark.parametrize("cfg,factory,channels", [
    (c.VGG16BNConfig(), "backbones:build_vgg16_bn", (512, 512)),
    (c.ResNetMGConfig(), "backbones:build_resnet_mg", (256, 512)),
    (c.ShuffleNetV2Config(), "backbones:build_shufflenet_v2", (232, 464)),
    (c.RepVGGConfig(), "repvgg:build_repvgg_a2", (384, 1408)),
], ids=lambda v: getattr(v, "type", ""))
def test_backbones_return_stride_8_and_16(cfg, factory, channels) -> None:
    """§2 table: channels @ strides 8 and 16 (ResNet / ShuffleNet without max-pool, RepVGG stage0 stride 1)."""
    backbone = check_backbone(f"{P}.{factory}", cfg, image_size=(64, 96))
    assert backbone.output_shape() == {"c3": ShapeSpec(channels[0], 8), "c4": ShapeSpec(channels[1], 16)}


def test_pretrained_without_cached_weights_is_a_clear_error(tmp_path, monkeypatch) -> None:
    from lsvr_core.errors import ConfigError
    from lsvr_mutualguide.backbones import build_resnet_mg

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError, match="resnet18-.*hub cache"):
        build_resnet_mg(c.ResNetMGConfig(pretrained=True))


@pytest.mark.parametrize("cfg", [c.SSDNeckConfig(out_channels=32, num_levels=4),
                                 c.FPNMGNeckConfig(out_channels=32, num_levels=5),
                                 c.PAFPNNeckConfig(out_channels=32, num_levels=4)], ids=lambda v: v.type)
def test_necks(cfg) -> None:
    factory = {"ssd": "build_ssd", "fpn_mg": "build_fpn_mg", "pafpn": "build_pafpn"}[cfg.type]
    shape = {"c3": ShapeSpec(24, 8), "c4": ShapeSpec(40, 16)}
    neck = check_neck(f"{P}.necks:{factory}", cfg, shape, image_size=(128, 128))
    strides = [s.stride for s in neck.output_shape().values()]
    assert strides == [8 * 2**k for k in range(cfg.num_levels)]
    assert list(neck.output_shape())[0] == "p3"


HEADS = {
    "v1": c.MutualGuideHeadConfig(),
    "v2": c.MutualGuideHeadConfig(assigner=c.MutualGuideAssignerConfig(variant="v2"),
                                  loss_cls=c.VarifocalPolyLossConfig(), loss_iou=c.SIoULossConfig()),
    "iou": c.MutualGuideHeadConfig(assigner=c.IoUAssignerConfig()),
}


@pytest.mark.parametrize("name", list(HEADS))
def test_head_conformance(name: str) -> None:
    shape = {f"p{i}": ShapeSpec(16, 2**i) for i in range(3, 7)}
    head = check_head(f"{P}.head:build_mutual_guide_head", HEADS[name], shape, image_size=(128, 128))
    assert head.conf[0].out_channels == 6 * 3 and head.loc[0].out_channels == 6 * 4
    assert torch.allclose(head.conf[0].bias, torch.full((18,), -math.log(99.0)))


def test_head_inference_is_class_wise_nms_with_threshold_and_cap() -> None:
    """§6: scores above 0.005 per class, NMS 0.5 within a class only, at most N detections, boxes clamped."""
    head = MutualGuideHead({"p3": ShapeSpec(8, 8)}, 2, None, None, None, detections_per_img=3, pre_nms_topk=None)
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 70, 90], [-5, 0, 10, 200]])
    scores = torch.tensor([[0.9, 0.8], [0.7, 0.004], [0.006, 0.001], [0.003, 0.002]])
    meta = Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 7, (100, 100), (100, 100))
    pred = head._predict_image(boxes, scores, meta)
    # class 0: boxes 0 and 1 overlap (IoU 0.82) -> 0 kept; box 2 (0.006) kept; class 1: box 0 (0.8) kept
    assert pred.scores.tolist() == pytest.approx([0.9, 0.8, 0.006])
    assert pred.labels.tolist() == [0, 1, 0] and pred.image_id == 7
    assert len(nms(boxes[:2], scores[:2, 0], 0.5)) == 1  # the oracle agrees that they suppress each other
    head.detections_per_img = 2
    assert len(head._predict_image(boxes, scores, meta)) == 2


def test_repvgg_block_reparameterisation_is_exact() -> None:
    torch.manual_seed(0)
    for cin, cout, stride in [(8, 8, 1), (8, 16, 2), (3, 8, 1)]:
        block = RepVGGBlock(cin, cout, stride)
        for bn in [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)
        block.eval()
        x = torch.randn(2, cin, 9, 9)
        before = block(x)
        block.switch_to_deploy()
        assert not hasattr(block, "rbr_dense") and hasattr(block, "rbr_reparam")
        torch.testing.assert_close(block(x), before, atol=1e-5, rtol=1e-5)


def test_repvgg_backbone_deploy_equals_train_form() -> None:
    torch.manual_seed(0)
    model = RepVGGBackbone(blocks=(1, 2, 1, 1), widths=(0.25, 0.25, 0.25, 0.25))
    model.train()
    model(torch.randn(4, 3, 32, 32))  # populate BN running statistics
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    before = model(x)
    after = model.switch_to_deploy()(x)
    for level in before:
        torch.testing.assert_close(after[level], before[level], atol=1e-4, rtol=1e-4)


def test_balanced_l1_hand_values() -> None:
    """§4: alpha 0.5, gamma 1.5, beta 0.11, b = e^3 - 1; the two pieces meet at |x| = beta."""
    b = math.e**3 - 1
    x = 0.05
    inner = 0.5 / b * (b * x + 1) * math.log(b * x / 0.11 + 1) - 0.5 * x
    outer = 1.5 * 0.3 + 1.5 / b - 0.5 * 0.11
    got = balanced_l1(torch.tensor([x, -0.3, 0.0]))
    torch.testing.assert_close(got, torch.tensor([inner, outer, 0.0]))
    eps = 1e-5
    left, right = balanced_l1(torch.tensor([0.11 - eps, 0.11 + eps]))
    assert abs(float(left - right)) < 1e-4


def test_siou_hand_value() -> None:
    """A 2x2 box shifted by 1 along x: IoU 1/3, angle cost 0 (gamma 2), distance 1 - exp(-2 (1/3)^2), no shape."""
    pred, target = torch.tensor([[1.0, 0, 3, 2]]), torch.tensor([[0.0, 0, 2, 2]])
    expected = 1 - 1 / 3 + (1 - math.exp(-2 / 9)) / 2
    torch.testing.assert_close(siou(pred, target), torch.tensor([expected]), atol=1e-5, rtol=1e-5)
    assert float(siou(target, target)) == pytest.approx(0.0, abs=1e-5)


def test_varifocal_poly_hand_value() -> None:
    from lsvr_mutualguide.losses import VarifocalPolyLoss

    loss = VarifocalPolyLoss(loss_weight=1.0)
    logit = torch.tensor([[0.0, 0.0]])
    q = torch.tensor([[0.6, 0.0]])
    pos = 0.6 * -(0.6 * math.log(0.5) + 0.4 * math.log(0.5)) + 0.5**3
    neg = 0.75 * 0.25 * -math.log(0.5) + 0.5**3
    torch.testing.assert_close(loss(logit, q, avg_factor=1.0), torch.tensor(pos + neg))


@pytest.mark.parametrize("cfg,inputs", [
    (c.BalancedL1LossConfig(), (torch.randn(6, 4), torch.randn(6, 4), torch.rand(6))),
    (c.VarifocalPolyLossConfig(), (torch.randn(5, 3), torch.rand(5, 3) * (torch.rand(5, 3) > 0.7))),
    (c.SIoULossConfig(), (torch.tensor([[0.0, 0, 10, 12], [5, 5, 30, 20]]), torch.tensor([[1.0, 2, 12, 10],
                                                                                          [4, 6, 25, 26]]))),
], ids=lambda v: getattr(v, "type", ""))
def test_loss_conformance(cfg, inputs) -> None:
    factory = {"balanced_l1": "build_balanced_l1", "varifocal_poly": "build_varifocal_poly", "siou": "build_siou"}
    check_loss(f"{P}.losses:{factory[cfg.type]}", cfg, inputs)


def test_v1_head_defaults_follow_the_spec() -> None:
    cfg = c.MutualGuideHeadConfig()
    assert cfg.loss_cls == FocalLossConfig(alpha=0.25, gamma=1.0)
    assert (cfg.loss_bbox.alpha, cfg.loss_bbox.gamma, cfg.loss_bbox.beta) == (0.5, 1.5, 0.11)
    assert (cfg.anchor_base, cfg.variances, cfg.score_thresh, cfg.nms_thresh, cfg.detections_per_img) == (
        24.0, (0.1, 0.2), 0.005, 0.5, 300)
