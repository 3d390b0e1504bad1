"""Mutual-guidance and IoU assigners on hand-built anchors and predictions (spec §3, §7, §10)."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_convert, box_iou

from lsvr_core.testing.suites import check_assigner
from lsvr_mutualguide.anchors import generate_anchors
from lsvr_mutualguide.assigners import IGNORED, NEGATIVE, POSITIVE, IoUAssigner, MutualGuideAssigner, batched_iou
from lsvr_mutualguide.box_coding import decode
from lsvr_mutualguide.config import IoUAssignerConfig, MutualGuideAssignerConfig
from lsvr_mutualguide.reference_assign import assign_v1_image

torch.set_num_threads(1)
LOW = -math.log(99.0)  # logit of p = 0.01, the prior at initialisation


def xyxy_to_anchors(boxes: list[list[float]]) -> torch.Tensor:
    return box_convert(torch.tensor(boxes, dtype=torch.float32), "xyxy", "cxcywh")


def run(assigner, anchors, pred_boxes, logits, gt_boxes, gt_labels):
    """One image through a batched assigner; returns the Assignment with the batch dim dropped."""
    g = len(gt_boxes)
    out = assigner(anchors, pred_boxes[None], logits[None], gt_boxes[None], gt_labels[None],
                   torch.ones(1, g, dtype=torch.bool), torch.zeros(1, g, dtype=torch.bool))
    return type(out)(*(getattr(out, f)[0] for f in out.__dataclass_fields__))


def test_batched_iou_matches_torchvision() -> None:
    gen = torch.Generator().manual_seed(0)
    a = box_convert(torch.rand(2, 5, 4, generator=gen) * 50 + torch.tensor([0, 0, 5, 5]), "cxcywh", "xyxy")
    b = box_convert(torch.rand(2, 7, 4, generator=gen) * 50 + torch.tensor([0, 0, 5, 5]), "cxcywh", "xyxy")
    got = batched_iou(a, b)
    for i in range(2):
        torch.testing.assert_close(got[i], box_iou(a[i], b[i]))


def test_at_initialisation_mg_v1_equals_iou_matching() -> None:
    """§10 (a): offsets 0 and p = 0.01 reduce MG to ordinary IoU matching, for both tasks."""
    anchors = generate_anchors([(16, 16), (8, 8), (4, 4)], (128, 128), anchor_base=16.0)
    gt = torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 30.0, 120.0, 100.0], [30.0, 80.0, 46.0, 96.0]])
    labels = torch.tensor([0, 2, 1])
    logits = torch.full((len(anchors), 3), LOW)
    pred = decode(torch.zeros(len(anchors), 4), anchors)
    mg = run(MutualGuideAssigner(), anchors, pred, logits, gt, labels)
    base = run(IoUAssigner(), anchors, pred, logits, gt, labels)
    assert int((base.cls_state == POSITIVE).sum()) > len(gt)  # not only the forced anchors
    assert torch.equal(mg.cls_state, base.cls_state)
    assert torch.equal(mg.reg_pos, base.reg_pos)
    assert torch.equal(mg.reg_pos, mg.cls_state == POSITIVE)
    pos = mg.cls_state == POSITIVE
    assert torch.equal(mg.cls_gt[pos], base.cls_gt[pos]) and torch.equal(mg.reg_gt[pos], base.reg_gt[pos])


def _random_scene(seed: int, num_gt: int, num_anchors_side: int = 12, size: int = 96):
    gen = torch.Generator().manual_seed(seed)
    anchors = generate_anchors([(num_anchors_side,) * 2, (num_anchors_side // 2,) * 2], (size, size), 12.0)
    xy = torch.rand(num_gt, 2, generator=gen) * size * 0.6
    wh = torch.rand(num_gt, 2, generator=gen) * size * 0.35 + 10
    gt = torch.cat([xy, (xy + wh).clamp(max=size)], 1)
    labels = torch.randint(0, 4, (num_gt,), generator=gen)
    offsets = torch.randn(len(anchors), 4, generator=gen) * 0.8
    logits = torch.randn(len(anchors), 4, generator=gen) * 2
    return anchors, decode(offsets, anchors), logits, gt, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_per_object_equal_iou_matching(seed: int) -> None:
    """§3 step 6: each object gets IoU matching's number of positives and ignored anchors for classification
    (while it has that many overlapping predicted boxes) and its number of positives for regression."""
    anchors, pred, logits, gt, labels = _random_scene(seed, num_gt=3)
    mg = run(MutualGuideAssigner(), anchors, pred, logits, gt, labels)
    base = run(IoUAssigner(), anchors, pred, logits, gt, labels)
    iou_pred = box_iou(gt, pred)
    for g in range(len(gt)):
        n_pos = int(((base.cls_state == POSITIVE) & (base.cls_gt == g)).sum())
        n_ign = int(((base.cls_state == IGNORED) & (base.cls_gt == g)).sum())
        assert n_pos >= 1
        if int((iou_pred[g] > 0).sum()) >= n_pos + n_ign + 5:  # enough predicted boxes overlap the object
            assert int(((mg.cls_state == POSITIVE) & (mg.cls_gt == g)).sum()) == n_pos
            assert int(((mg.cls_state == IGNORED) & (mg.cls_gt == g)).sum()) == n_ign
        assert int((mg.reg_pos & (mg.reg_gt == g)).sum()) == n_pos  # §10 (b)
    assert (mg.cls_state == POSITIVE).sum() == (base.cls_state == POSITIVE).sum()


def _three_anchor_scene():
    """One object, anchors A (IoU 0.55), B (IoU 0.45), C (IoU ~0.1), D far away: n_pos = 1, n_ign = 2."""
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    anchors = xyxy_to_anchors([[0, 0, 100, 55], [0, 0, 100, 45], [0, 0, 100, 10], [300, 300, 340, 340]])
    iou = box_iou(gt, box_convert(anchors, "cxcywh", "xyxy"))[0]
    assert torch.allclose(iou[:3], torch.tensor([0.55, 0.45, 0.10])) and iou[3] == 0
    return gt, anchors


def test_classification_positive_is_chosen_by_predicted_box_iou() -> None:
    """Localize to classify: C's predicted box fits the object best, so C is the classification positive and
    the next best predicted box (B) is ignored; regression still goes to A (best anchor IoU, equal scores)."""
    gt, anchors = _three_anchor_scene()
    pred = torch.tensor([[0.0, 0, 100, 40], [0, 0, 100, 80], [0, 0, 100, 100], [300, 300, 340, 340]])
    logits = torch.full((4, 2), LOW)
    mg = run(MutualGuideAssigner(), anchors, pred, logits, gt, torch.tensor([1]))
    assert mg.cls_state.tolist() == [NEGATIVE, IGNORED, POSITIVE, NEGATIVE]
    assert mg.reg_pos.tolist() == [True, False, False, False]
    base = run(IoUAssigner(), anchors, pred, logits, gt, torch.tensor([1]))
    assert base.cls_state.tolist() == [POSITIVE, IGNORED, NEGATIVE, NEGATIVE]


def test_regression_positive_is_chosen_by_amplified_anchor_iou() -> None:
    """Classify to localize: B's confident score lifts 0.45 to 0.45^0.5 = 0.67 > A's 0.55^1 (p = 0 at A)."""
    gt, anchors = _three_anchor_scene()
    pred = box_convert(anchors, "cxcywh", "xyxy")
    logits = torch.full((4, 2), -30.0)
    logits[1, 1] = 30.0  # p(class 1) = 1 at B
    mg = run(MutualGuideAssigner(), anchors, pred, logits, gt, torch.tensor([1]))
    assert mg.reg_pos.tolist() == [False, True, False, False]
    logits[1, 1], logits[1, 0] = -30.0, 30.0  # a confident *wrong* class does not amplify
    mg = run(MutualGuideAssigner(), anchors, pred, logits, gt, torch.tensor([1]))
    assert mg.reg_pos.tolist() == [True, False, False, False]


def test_ties_do_not_mark_zero_iou_anchors() -> None:
    """§3 "Quirk" / §10: n_pos = 2 but only one predicted box overlaps the object; the reference's top-k
    would also mark an arbitrary zero-IoU anchor. Here no anchor with zero predicted-box IoU is marked."""
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    anchors = xyxy_to_anchors([[0, 0, 100, 60], [0, 0, 100, 70], [0, 0, 100, 45], [300, 300, 340, 340],
                               [200, 200, 240, 240], [400, 0, 440, 40]])
    pred = torch.tensor([[500.0, 500, 540, 540], [0, 0, 100, 90], [600, 600, 640, 640], [300, 300, 340, 340],
                         [200, 200, 240, 240], [400, 0, 440, 40]])
    mg = run(MutualGuideAssigner(), anchors, pred, torch.full((6, 1), LOW), gt, torch.tensor([0]))
    marked = mg.cls_state != NEGATIVE
    assert marked.tolist() == [False, True, False, False, False, False]
    assert (box_iou(gt, pred)[0][marked] > 0).all()


def test_crowd_boxes_only_ignore() -> None:
    anchors = xyxy_to_anchors([[0, 0, 50, 50], [60, 60, 100, 100], [200, 200, 240, 240]])
    pred = box_convert(anchors, "cxcywh", "xyxy")
    gt = torch.tensor([[[0.0, 0, 50, 50], [55, 55, 110, 110]]])
    out = MutualGuideAssigner()(anchors, pred[None], torch.full((1, 3, 2), LOW), gt, torch.tensor([[0, 1]]),
                                torch.ones(1, 2, dtype=torch.bool), torch.tensor([[False, True]]))
    assert out.cls_state[0].tolist() == [POSITIVE, IGNORED, NEGATIVE]
    assert out.reg_pos[0].tolist() == [True, False, False]


def test_v2_dynamic_k_soft_labels_and_weights() -> None:
    """§7: k = floor(sum of the top predicted-box IoUs); soft targets are those IoUs; regression quality is
    min(1, IoU_anchor exp(p / sigma)) and weights the regression positives."""
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    anchors = xyxy_to_anchors([[0, 0, 100, 90], [0, 0, 100, 60], [0, 0, 100, 20], [0, 0, 100, 80]])
    pred = torch.tensor([[0.0, 0, 100, 95], [0, 0, 100, 85], [0, 0, 100, 75], [0, 0, 100, 30]])
    logits = torch.full((4, 1), LOW)
    out = run(MutualGuideAssigner(variant="v2"), anchors, pred, logits, gt, torch.tensor([0]))
    # predicted IoUs 0.95 + 0.85 + 0.75 + 0.30 = 2.85 -> k = 2
    assert out.cls_state.tolist() == [POSITIVE, POSITIVE, NEGATIVE, NEGATIVE]
    torch.testing.assert_close(out.cls_quality, torch.tensor([0.95, 0.85, 0.0, 0.0]))
    q = (torch.tensor([0.9, 0.6, 0.2, 0.8]) * math.exp(0.01 / 2)).clamp(max=1)  # sum 2.53 -> k = 2: anchors 0, 3
    assert out.reg_pos.tolist() == [True, False, False, True]
    torch.testing.assert_close(out.reg_weight, torch.where(out.reg_pos, q, torch.zeros(4)))


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_equals_per_image_loop(seed: int) -> None:
    """The batched v1 assigner equals the per-image, per-object loop written from §3, image by image,
    including an image without objects and padded GT rows."""
    scenes = [_random_scene(seed * 10 + i, n) for i, n in enumerate([3, 1, 5, 0])]
    anchors = scenes[0][0]
    g = max(len(s[3]) for s in scenes)
    gt = torch.zeros(len(scenes), g, 4)
    labels = torch.zeros(len(scenes), g, dtype=torch.int64)
    valid = torch.zeros(len(scenes), g, dtype=torch.bool)
    for i, s in enumerate(scenes):
        gt[i, : len(s[3])], labels[i, : len(s[3])], valid[i, : len(s[3])] = s[3], s[4], True
    pred = torch.stack([s[1] for s in scenes])
    logits = torch.stack([s[2] for s in scenes])
    out = MutualGuideAssigner()(anchors, pred, logits, gt, labels, valid, torch.zeros_like(valid))
    for i, s in enumerate(scenes):
        if len(s[3]) == 0:
            assert (out.cls_state[i] == NEGATIVE).all() and not out.reg_pos[i].any()
            continue
        state, cls_gt, reg_pos, reg_gt = assign_v1_image(anchors, s[1], s[2], s[3], s[4])
        assert torch.equal(out.cls_state[i], state)
        assert torch.equal(out.cls_gt[i][state != NEGATIVE], cls_gt[state != NEGATIVE])
        assert torch.equal(out.reg_pos[i], reg_pos) and torch.equal(out.reg_gt[i][reg_pos], reg_gt[reg_pos])


@pytest.mark.parametrize("cfg", [MutualGuideAssignerConfig(), MutualGuideAssignerConfig(variant="v2"),
                                 IoUAssignerConfig()], ids=["v1", "v2", "iou"])
def test_assigner_conformance(cfg) -> None:
    anchors, pred, logits, gt, labels = _random_scene(3, num_gt=2)
    spec = {"mutual_guide": "lsvr_mutualguide.assigners:build_mutual_guide",
            "iou": "lsvr_mutualguide.assigners:build_iou"}[cfg.type]

    def call(assigner):
        return assigner(anchors, pred[None], logits[None].requires_grad_(True), gt[None], labels[None],
                        torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 2, dtype=torch.bool))

    check_assigner(spec, cfg, call)


@pytest.mark.parametrize("variant", ["v1", "v2"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_cpu_chunks_equal_one_whole_batch_call(variant: str, chunk: int) -> None:
    """Chunked CPU assignment (trailing padding columns dropped per chunk) equals one call on the batch."""
    g = torch.Generator().manual_seed(7)
    anchors = xyxy_to_anchors(
        [[x, y, x + s, y + s] for s in (12.0, 24.0) for x in range(0, 96, 12) for y in range(0, 96, 12)])
    b, gmax, a, c = 5, 6, anchors.shape[0], 4
    xy = torch.rand(b, gmax, 2, generator=g) * 60
    gt = torch.cat([xy, xy + 10 + torch.rand(b, gmax, 2, generator=g) * 30], -1)
    labels = torch.randint(0, c, (b, gmax), generator=g)
    counts = torch.tensor([6, 0, 2, 4, 1])  # image 1 has no object: a chunk may hold no valid column
    valid = torch.arange(gmax)[None] < counts[:, None]
    crowd = torch.zeros(b, gmax, dtype=torch.bool)
    crowd[3, 3] = True
    pred = box_convert(anchors, "cxcywh", "xyxy")[None].repeat(b, 1, 1) + torch.randn(b, a, 4, generator=g)
    logits = torch.randn(b, a, c, generator=g)
    whole = MutualGuideAssigner(variant=variant, cpu_chunk=b)(anchors, pred, logits, gt, labels, valid, crowd)
    parts = MutualGuideAssigner(variant=variant, cpu_chunk=chunk)(anchors, pred, logits, gt, labels, valid, crowd)
    for name in vars(whole):
        assert torch.equal(getattr(parts, name), getattr(whole, name)), name
    assert int((whole.cls_state == POSITIVE).sum()) > 0
