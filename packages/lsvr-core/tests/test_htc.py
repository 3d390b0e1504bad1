"""Built-in HTC head: conformance (segm with and without the semantic branch, bbox), the mmdet settings it
defaults to, per-stage sampling against hand-computed IoUs, the cascade's refinement and mask information
flow, the semantic loss against a direct cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

from lsvr_core.builtin.htc_config import HTCHeadConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError, DataError
from lsvr_core.models.htc.head import build_htc_head
from lsvr_core.models.htc.modules import HTCMaskHead
from lsvr_core.models.htc.sampling import sample_rois
from lsvr_core.testing import check_head, make_batch, make_features

torch.set_num_threads(1)
FACTORY = "lsvr_core.models.htc.head:build_htc_head"
SHAPE = {f"p{i}": ShapeSpec(64, 2**i) for i in range(2, 6)}  # P6 is max-pooled in the head
SMALL = dict(representation_size=64, mask_head_channels=16, box_batch_size_per_image=64, semantic_classes=5)


def _batch_with_semantic():
    batch = make_batch((96, 160), 3)
    g = torch.Generator().manual_seed(0)
    for t in batch.targets:
        h, w = t.image_size
        t.semantic = torch.randint(0, 5, (h, w), generator=g).to(torch.uint8)
        t.semantic[:4] = 255
    return batch


def test_defaults_are_the_reference_htc() -> None:
    cfg = HTCHeadConfig()
    assert cfg.stage_iou_thresholds == (0.5, 0.6, 0.7) and cfg.stage_loss_weights == (1.0, 0.5, 0.25)
    assert (cfg.semantic_classes, cfg.semantic_convs, cfg.semantic_loss_weight, cfg.semantic_fusion_level) == (
        183, 4, 0.2, "p3")
    assert cfg.interleaved and cfg.mask_info_flow and cfg.with_semantic and cfg.roi_align_aligned
    head = build_htc_head(HTCHeadConfig(**SMALL), SHAPE, 3, "segm")
    assert [c.weights for c in head.box_coders] == [(10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0),
                                                     pytest.approx((1 / 0.033, 1 / 0.033, 1 / 0.067, 1 / 0.067))]
    assert [m.conv_res is None for m in head.mask_heads] == [True, False, False]
    assert head.semantic_stride == 8 and len(head.semantic_head.lateral_convs) == 5
    assert all(p.bbox_pred.out_features == 4 for p in head.box_predictors)  # class-agnostic


def test_conformance_segm_with_semantic_branch() -> None:
    head = check_head(FACTORY, HTCHeadConfig(**SMALL), SHAPE, task="segm", batch=_batch_with_semantic())
    head.train()
    losses = head(make_features(SHAPE, (96, 160), 2), _batch_with_semantic())
    assert {f"loss_s{t}_{k}" for t in range(3) for k in ("cls", "box", "mask")} | {
        "loss_rpn_cls", "loss_rpn_box", "loss_semantic"} == set(losses)


@pytest.mark.parametrize("task", ["segm", "bbox"])
def test_conformance_without_semantic_branch(task: str) -> None:
    head = check_head(FACTORY, HTCHeadConfig(**SMALL, with_semantic=False), SHAPE, task=task)
    assert head.semantic_head is None and hasattr(head, "mask_heads") == (task == "segm")


def test_semantic_branch_needs_maps_and_its_loss_is_weighted_cross_entropy() -> None:
    head = build_htc_head(HTCHeadConfig(**SMALL), SHAPE, 3, "segm")
    batch = make_batch((96, 160), 3)
    for t in batch.targets:  # a dataset without semantic_dir gives no maps
        t.semantic = None
    with pytest.raises(DataError, match="semantic_dir"):
        head(make_features(SHAPE, (96, 160), 2), batch)
    batch = _batch_with_semantic()
    logits = torch.randn(2, 5, 12, 20)  # stride 8 over the 96 x 160 padded batch
    padded = torch.full((2, 96, 160), 255, dtype=torch.int64)
    for i, t in enumerate(batch.targets):
        h, w = t.image_size
        padded[i, :h, :w] = t.semantic.long()
    target = padded[:, ::8, ::8]  # nearest resize by 1/8 picks every 8th pixel
    expected = 0.2 * F.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(head._semantic_loss(logits, batch), expected)


def test_sampling_by_iou_threshold_with_ground_truth_added() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    proposals = torch.tensor([[0.0, 0.0, 10.0, 8.0],   # IoU 0.8
                              [0.0, 0.0, 10.0, 6.5],   # IoU 0.65
                              [0.0, 0.0, 10.0, 5.5],   # IoU 0.55
                              [20.0, 20.0, 30.0, 30.0]])  # IoU 0
    sampler = BalancedPositiveNegativeSampler(100, 1.0)
    for thr, positives in ((0.5, 4), (0.6, 3), (0.7, 2)):
        s = sample_rois(proposals, gt, torch.tensor([2]), thr, sampler)
        assert int((s.labels == 2).sum()) == positives and int((s.labels == 0).sum()) == 5 - positives
        assert s.is_gt.sum() == 1 and torch.equal(s.boxes[s.is_gt][0], gt[0])
    empty = sample_rois(proposals, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 0.5, sampler)
    assert (empty.labels == 0).all() and len(empty.labels) == 4


def test_mask_information_flow_feeds_previous_heads() -> None:
    torch.manual_seed(0)
    head = build_htc_head(HTCHeadConfig(**SMALL), SHAPE, 3, "segm")
    x = torch.randn(2, 64, 14, 14)
    _, f0 = head.mask_heads[0](x, None, return_logits=False)
    _, f1 = head.mask_heads[1](x, f0, return_logits=False)
    logits2, _ = head.mask_heads[2](x, f1)
    torch.testing.assert_close(head._mask_logits(2, x), logits2)
    plain, _ = head.mask_heads[2].__class__.forward(head.mask_heads[2], x, None)
    assert not torch.allclose(plain, logits2)
    with pytest.raises(ValueError, match="information-flow"):
        HTCMaskHead(64, 16, 2, 3, with_conv_res=False)(x, torch.randn(2, 16, 14, 14))


def test_cascade_regression_decodes_with_each_stage_coder() -> None:
    head = build_htc_head(HTCHeadConfig(**SMALL), SHAPE, 3, "bbox")
    boxes = [torch.tensor([[10.0, 10.0, 50.0, 30.0]])]
    deltas = torch.tensor([[0.1, -0.1, 0.2, 0.0]])
    for t, std in enumerate((0.1, 0.05, 0.033)):
        out = head._regress(t, deltas, boxes, [(96, 160)])[0][0]
        cx, w = 30 + 0.1 * std * 40, 40 * torch.exp(torch.tensor(0.2 * (0.2 if t == 0 else 0.1 if t == 1 else 0.067)))
        torch.testing.assert_close(out[[0, 2]], torch.stack([cx - w / 2, cx + w / 2]), rtol=0, atol=1e-4)


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match="one entry per stage"):
        HTCHeadConfig(stage_iou_thresholds=(0.5, 0.6))
    with pytest.raises(ConfigError, match="already outputs 'p6'"):
        build_htc_head(HTCHeadConfig(**SMALL), {**SHAPE, "p6": ShapeSpec(64, 64)}, 3, "segm")
    with pytest.raises(ConfigError, match="supports tasks"):
        build_htc_head(HTCHeadConfig(**SMALL), SHAPE, 3, "pose_bbox")


def test_plugin_registers_htc() -> None:
    from lsvr_core.plugins import get_plugin_manager

    spec = get_plugin_manager().get("head", "htc")
    assert spec.tasks == ("bbox", "segm") and spec.factory == FACTORY
