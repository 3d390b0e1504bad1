"""FCOS head: losses train on a tiny batch, crowd boxes are never positives, predictions in the input frame."""

from __future__ import annotations

import math

import pytest
import torch

from lsvr_core.builtin.configs import FCOSHeadConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.models.fcos import build_fcos_head
from lsvr_core.structures import Batch, Targets
from lsvr_core.testing import make_batch, make_features

torch.set_num_threads(1)
SHAPE = {f"p{i}": ShapeSpec(64, 2**i) for i in range(3, 8)}


def _head(**kw):
    torch.manual_seed(0)
    return build_fcos_head(FCOSHeadConfig(num_convs=1, **kw), SHAPE, 3, "bbox")


def test_loss_finite_and_decreasing():
    head = _head()
    batch = make_batch((64, 96), num_classes=3)
    feats = make_features(SHAPE, (64, 96), batch_size=2)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    totals = []
    for _ in range(12):
        losses = head(feats, batch)
        assert set(losses) == {"loss_cls", "loss_box", "loss_ctr"}
        assert all(torch.isfinite(v) for v in losses.values())
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < 0.8 * totals[0], totals


def _one_box_batch(crowd: bool) -> Batch:
    t = Targets(torch.tensor([[8.0, 8.0, 56.0, 56.0]]), torch.tensor([1]), 7, (64, 64), (64, 64),
                iscrowd=torch.tensor([crowd]))
    return Batch(torch.zeros(1, 3, 64, 64), [t])


def test_crowd_boxes_are_never_positives():
    head = _head()
    feats = make_features(SHAPE, (64, 64), batch_size=1)
    crowd = head(feats, _one_box_batch(True))
    normal = head(feats, _one_box_batch(False))
    assert crowd["loss_box"].item() == 0 and crowd["loss_ctr"].item() == 0  # no positive point
    assert normal["loss_box"].item() > 0 and normal["loss_ctr"].item() > 0
    assert crowd["loss_cls"].item() != normal["loss_cls"].item()


def test_predict_boxes_in_input_frame_on_fcos_points():
    """Constant regression r = 0.25 (stride units) makes every box s/2 wide, centred on its point
    (floor(s/2) + x s, floor(s/2) + y s), clipped to the unpadded image size."""
    head = _head(score_thresh=0.0, detections_per_img=1000, nms_thresh=1.0)
    tv = head.head
    for conv in (tv.regression_head.bbox_reg, tv.regression_head.bbox_ctrness, tv.classification_head.cls_logits):
        torch.nn.init.zeros_(conv.weight)
    torch.nn.init.constant_(tv.regression_head.bbox_reg.bias, 0.25)
    torch.nn.init.constant_(tv.classification_head.cls_logits.bias, -4.0)
    with torch.no_grad():
        tv.classification_head.cls_logits.bias[2] = 4.0
    batch = make_batch((64, 128), num_classes=3)  # image 1 is 96 px wide, padded to 128
    feats = make_features(SHAPE, (64, 128), batch_size=2)
    head.eval()
    preds = head.predict(feats, batch)
    expected_score = math.sqrt(torch.sigmoid(torch.tensor(4.0)).item() * 0.5)
    for p, t, width in zip(preds, batch.targets, (128, 96), strict=True):
        assert p.frame == "input" and p.image_id == t.image_id
        top = p.scores > 0.5
        assert (p.labels[top] == 2).all()
        torch.testing.assert_close(p.scores[top], torch.full_like(p.scores[top], expected_score))
        assert p.boxes[:, 2].max() <= width and p.boxes[:, 3].max() <= 64
        boxes = p.boxes[top]
        inside = (boxes[:, 2] < width) & (boxes[:, 3] < 64)
        sizes = boxes[inside, 2] - boxes[inside, 0]
        strides = (2 * sizes).round()
        assert set(strides.tolist()) <= {8.0, 16.0, 32.0, 64.0, 128.0}
        centres = (boxes[inside, 0] + boxes[inside, 2]) / 2
        torch.testing.assert_close(torch.remainder(centres, strides), torch.floor(strides / 2))
    # the P3 point (4, 4): box [2, 2, 6, 6]
    assert (preds[0].boxes == torch.tensor([2.0, 2.0, 6.0, 6.0])).all(dim=1).any()


def test_rejects_other_tasks_and_bad_levels():
    with pytest.raises(ConfigError, match="does not support task 'segm'"):
        build_fcos_head(FCOSHeadConfig(), SHAPE, 3, "segm")
    with pytest.raises(ConfigError, match="not produced by the neck"):
        build_fcos_head(FCOSHeadConfig(in_levels=("p2", "p3")), SHAPE, 3, "bbox")
    with pytest.raises(ConfigError, match="divisible by 32"):
        build_fcos_head(FCOSHeadConfig(in_levels=("p3",)), {"p3": ShapeSpec(48, 8)}, 3, "bbox")
