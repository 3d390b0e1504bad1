"""The mmdet-2.x options of the built-in Mask R-CNN head (LESA spec §4.1): each changes what it should and
nothing else, against independent oracles (torchvision.ops.roi_align, hand formulas, slicing, pasting)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import roi_align

from lsvr_core.builtin.mask_rcnn_config import MaskRCNNHeadConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.models.mask_rcnn import build_mask_rcnn_head
from lsvr_core.models.rcnn_parts import RoIAlignPyramid, mask_targets
from lsvr_core.structures import Predictions, Targets
from lsvr_core.testing import check_head, make_batch, make_features

torch.set_num_threads(1)
SHAPE = {f"p{i}": ShapeSpec(64, 2**i) for i in range(2, 7)}
SMALL = dict(representation_size=128, mask_head_channels=32, box_batch_size_per_image=64)
MMDET = dict(roi_align_aligned=True, box_loss="l1", maxpool_last_level=True, mask_paste_frame="original")


def test_defaults_are_torchvision() -> None:
    cfg = MaskRCNNHeadConfig()
    assert (cfg.roi_align_aligned, cfg.box_loss, cfg.maxpool_last_level, cfg.mask_paste_frame) == (
        False, "smooth_l1", False, "input")


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_pool_equals_torchvision_roi_align(aligned: bool) -> None:
    torch.manual_seed(0)
    feats = {"p2": torch.randn(1, 3, 16, 16), "p3": torch.randn(1, 3, 8, 8)}
    box = torch.tensor([[4.0, 6.0, 40.0, 30.0]])  # sqrt(area) 29 px -> p2
    pool = RoIAlignPyramid(("p2", "p3"), [4, 8], 7, 0, aligned=aligned)
    out = pool(feats, [box], [(64, 64)])
    rois = torch.cat([torch.zeros(1, 1), box], 1)
    torch.testing.assert_close(out, roi_align(feats["p2"], rois, 7, 0.25, 0, aligned=aligned))
    other = roi_align(feats["p2"], rois, 7, 0.25, 0, aligned=not aligned)
    assert not torch.allclose(out, other)


def test_aligned_option_reaches_both_pools_and_the_mask_targets() -> None:
    head = build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, roi_align_aligned=True), SHAPE, 3, "segm")
    assert head.roi_heads.box_roi_pool.aligned and head.roi_heads.mask_roi_pool.aligned and head.roi_heads.aligned
    default = build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL), SHAPE, 3, "segm")
    assert not (default.roi_heads.box_roi_pool.aligned or default.roi_heads.aligned)
    # mask targets: a 0/1 square cropped over its own box (pixels 8..23 = [8, 24) continuous): aligned samples
    # pixel centres, so the target is symmetric; unaligned is shifted by half a pixel (only the far edges blur)
    gt = torch.zeros(1, 32, 32)
    gt[0, 8:24, 8:24] = 1
    box = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    aligned = mask_targets(gt, box, torch.zeros(1), 28, True)[0]
    torch.testing.assert_close(aligned, aligned.flip(0).flip(1))
    assert torch.equal(aligned[1:-1, 1:-1], torch.ones(26, 26))
    shifted = mask_targets(gt, box, torch.zeros(1), 28, False)[0]
    assert shifted[0, 0] == 1 and shifted[-1, -1] < 0.5  # asymmetric


def _rpn_inputs():
    torch.manual_seed(1)
    labels = [torch.tensor([1.0, 0.0, 1.0, -1.0, 0.0])]
    deltas = torch.randn(5, 4)
    targets = [torch.randn(5, 4)]
    return torch.randn(5), deltas, labels, targets


@pytest.mark.parametrize(("box_loss", "beta"), [("l1", 0.0), ("smooth_l1", 1 / 9)])
def test_rpn_box_loss_formula(box_loss: str, beta: float) -> None:
    head = build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, box_loss=box_loss), SHAPE, 3, "bbox")
    objectness, deltas, labels, targets = _rpn_inputs()
    _, loss = head.rpn.compute_loss(objectness, deltas, labels, targets)
    diff = (deltas - targets[0])[[0, 2]].abs()
    per = diff if beta == 0 else torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)
    torch.testing.assert_close(loss, per.sum() / 4)  # 2 positives + 2 negatives sampled


def test_roi_box_loss_is_l1_over_positives_per_sampled_roi() -> None:
    torch.manual_seed(0)
    head = build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, box_loss="l1"), SHAPE, 3, "bbox").train()
    batch = make_batch((96, 160), 3)
    seen = {}
    select = head.roi_heads.select_training_samples

    def spy_select(*args):
        seen["samples"] = select(*args)
        return seen["samples"]

    head.roi_heads.select_training_samples = spy_select
    head.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: seen.__setitem__("pred", o))
    losses = head(make_features(SHAPE, tuple(batch.images.shape[-2:]), 2), batch)
    _, _, labels, reg = seen["samples"]
    cls = torch.cat(labels)
    pos = cls > 0
    deltas = seen["pred"][1].reshape(len(cls), -1, 4)[pos, cls[pos]]
    expected = (deltas - torch.cat(reg)[pos]).abs().sum() / len(cls)
    assert pos.any()
    torch.testing.assert_close(losses["loss_box"], expected)
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(seen["pred"][0], cls))


def test_maxpool_last_level_pools_p5_and_forbids_a_neck_p6() -> None:
    shape = {k: v for k, v in SHAPE.items() if k != "p6"}
    head = build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, maxpool_last_level=True), shape, 3, "bbox")
    feats = make_features(shape, (96, 160), 1)
    inputs, _ = head._inputs(feats, make_batch((96, 160), 3))
    assert list(inputs) == ["p2", "p3", "p4", "p5", "p6"]
    assert torch.equal(inputs["p6"], feats["p5"][..., ::2, ::2])  # 1x1 max-pool, stride 2 = subsampling
    assert head.rpn.anchor_generator.level_strides == [4, 8, 16, 32, 64]
    with pytest.raises(ConfigError, match="already outputs 'p6'"):
        build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, maxpool_last_level=True), SHAPE, 3, "bbox")


def test_original_frame_pasting() -> None:
    torch.manual_seed(0)
    roi = torch.rand(2, 28, 28)
    boxes_in = torch.tensor([[10.0, 12.0, 50.0, 40.0], [30.0, 5.0, 70.0, 60.0]])
    meta = Targets(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64), image_id=1,
                   orig_size=(150, 200), image_size=(60, 80), scale=(0.4, 0.4))
    masks_in = paste_masks_in_image(roi[:, None], boxes_in, (60, 80))[:, 0]
    pred = Predictions(boxes=boxes_in, scores=torch.ones(2), labels=torch.zeros(2, dtype=torch.int64), image_id=1,
                       masks=masks_in, roi_masks=roi)
    out = pred.to_original(meta)
    expected = paste_masks_in_image(roi[:, None], boxes_in / 0.4, (150, 200))[:, 0]
    torch.testing.assert_close(out.masks, expected)
    resized = Predictions(boxes=boxes_in, scores=torch.ones(2), labels=torch.zeros(2, dtype=torch.int64),
                          image_id=1, masks=masks_in).to_original(meta)
    assert resized.masks.shape == out.masks.shape and not torch.allclose(resized.masks, out.masks)
    flipped = Predictions(boxes=boxes_in, scores=torch.ones(2), labels=torch.zeros(2, dtype=torch.int64), image_id=1,
                          masks=masks_in, roi_masks=roi).to_original(
        Targets(**{**meta.__dict__, "flipped": True}))
    torch.testing.assert_close(flipped.masks, expected.flip(-1), atol=1e-5, rtol=0)


def test_head_predicts_roi_masks_with_original_pasting_and_passes_the_suite() -> None:
    shape = {k: v for k, v in SHAPE.items() if k != "p6"}
    head = check_head("lsvr_core.models.mask_rcnn:build_mask_rcnn_head", MaskRCNNHeadConfig(**SMALL, **MMDET),
                      shape, task="segm", image_size=(96, 160))
    head.eval()
    batch = make_batch((96, 160), 3)
    preds = head.predict(make_features(shape, tuple(batch.images.shape[-2:]), 2), batch)
    assert all(p.roi_masks.shape == (len(p), 28, 28) for p in preds)
