"""Inference decoding (LSNet spec §6) on hand-made head outputs."""

from __future__ import annotations

import torch

from lsvr_core.structures import Batch, Targets
from lsvr_lsnet.criterion import HeadOutputs
from lsvr_lsnet.encoding import encode_cross_targets
from lsvr_lsnet.layouts import task_layout
from lsvr_lsnet.postprocess import LSNetPostprocessor

STRIDES = [8, 16, 32]
SIZES = [(8, 8), (4, 4), (2, 2)]


def outputs(task: str, num_classes: int, hits: list[tuple[int, int, int, int, float, torch.Tensor]]) -> HeadOutputs:
    """Logits of -20 everywhere except ``hits``: (level, y, x, class, score, (K, 2) landmark offsets in cells)."""
    layout = task_layout(task)
    cls = [torch.full((1, num_classes, h, w), -20.0) for h, w in SIZES]
    vec = {b.name: [torch.zeros(1, 4 * b.num_landmarks, h, w) for h, w in SIZES] for b in layout.branches}
    for lv, y, x, c, score, offsets in hits:
        cls[lv][0, c, y, x] = torch.logit(torch.tensor(score))
        for b in layout.branches:
            vec[b.name][lv][0, :, y, x] = encode_cross_targets(offsets[: b.num_landmarks]).flatten()
    return HeadOutputs(cls, vec, vec)


def meta(size: tuple[int, int] = (64, 64), scale: tuple[float, float] = (1.0, 1.0)) -> Batch:
    t = Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 5, size, size, scale=scale)
    return Batch(torch.zeros(1, 3, 64, 64), [t])


def post(task: str, **kw: object) -> LSNetPostprocessor:
    args = {"nms_pre": 1000, "score_thr": 0.05, "nms_iou": 0.6, "max_per_img": 100, "pose_min_area": 1024.0,
            "pad_divisor": 32}
    args.update(kw)
    return LSNetPostprocessor(task_layout(task), **args)  # type: ignore[arg-type]


def test_bbox_decoding_clamping_and_nms() -> None:
    # anchor (16, 24) on P3 (x = 2, y = 3): extremes top (+1, -2), left (-1.5, 0), bottom (0, 1), right (2, 0.5)
    off = torch.tensor([[1.0, -2.0], [-1.5, 0.0], [0.0, 1.0], [2.0, 0.5], [0.0, 0.0]])
    # the same object seen from P4 (x = 1, y = 1 -> anchor (16, 16)): same box, lower score -> suppressed by NMS
    off_p4 = (torch.tensor([[24.0, 8.0], [4.0, 24.0], [16.0, 32.0], [32.0, 28.0], [16.0, 24.0]]) - 16.0) / 16.0
    # a far box leaving the image on the right: x = 56 + 3 * 8 = 80 -> clamped to 64
    off_far = torch.tensor([[0.0, -1.0], [-1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.0]])
    out = outputs("bbox", 2, [(0, 3, 2, 1, 0.9, off), (1, 1, 1, 1, 0.8, off_p4), (0, 5, 7, 0, 0.3, off_far)])
    pred = post("bbox")(out, meta(), STRIDES)[0]
    assert pred.image_id == 5
    assert pred.labels.tolist() == [1, 0]
    torch.testing.assert_close(pred.scores, torch.tensor([0.9, 0.3]))
    torch.testing.assert_close(pred.boxes, torch.tensor([[4.0, 8.0, 32.0, 32.0], [48.0, 32.0, 64.0, 48.0]]))
    expected = torch.tensor([[24.0, 8.0], [4.0, 24.0], [16.0, 32.0], [32.0, 28.0]])
    torch.testing.assert_close(pred.extras.require("extreme_points")[0], expected)
    assert pred.extras.require("extreme_points")[1, 3].tolist() == [64.0, 40.0]  # clamped like the box


def test_score_threshold_and_max_per_img() -> None:
    off = torch.tensor([[0.0, -1.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    hits = [(0, y, x, 0, 0.5 + 0.01 * (y * 8 + x), off) for y in range(0, 8, 2) for x in range(0, 8, 2)]
    hits.append((0, 1, 1, 1, 0.04, off))  # below score_thr
    pred = post("bbox", max_per_img=5)(outputs("bbox", 2, hits), meta(), STRIDES)[0]
    assert len(pred) == 5 and pred.labels.tolist() == [0] * 5
    assert pred.scores[0].item() > pred.scores[-1].item()


def test_segm_contours_and_box() -> None:
    t = torch.linspace(0, 6.283, 37)[:-1]
    contour = torch.stack([2 * torch.cos(t), 1.5 * torch.sin(t)], 1)
    off = torch.cat([contour, torch.zeros(1, 2)])
    pred = post("segm")(outputs("segm", 1, [(0, 4, 4, 0, 0.7, off)]), meta(), STRIDES)[0]
    assert pred.contours.shape == (1, 36, 2)
    torch.testing.assert_close(pred.contours[0], 32.0 + contour * 8, atol=1e-4, rtol=0)
    torch.testing.assert_close(pred.boxes[0], torch.cat([pred.contours[0].amin(0), pred.contours[0].amax(0)]))


def test_pose_outputs_and_small_box_filter() -> None:
    kps = torch.stack([torch.linspace(-2, 2, 17), torch.linspace(-3, 3, 17)], 1)
    off = torch.cat([kps, torch.zeros(1, 2)])
    small = off / 4  # box 8 x 12 px at stride 8 -> area 96 / (0.5 * 0.5) = 384 original px^2 <= 1024: dropped
    out = outputs("pose_kbox", 1, [(0, 4, 4, 0, 0.9, off), (0, 1, 6, 0, 0.8, small)])
    pred = post("pose_kbox", nms_pre=100, max_per_img=20)(out, meta(scale=(0.5, 0.5)), STRIDES)[0]
    assert len(pred) == 1 and pred.keypoints.shape == (1, 17, 3)
    torch.testing.assert_close(pred.keypoints[0, :, :2], 32.0 + kps * 8)
    assert (pred.keypoints[0, :, 2] == 1).all()
    torch.testing.assert_close(pred.boxes[0], torch.tensor([16.0, 8.0, 48.0, 56.0]))
    # pose_bbox: the box comes from the box branch (its 5 landmarks are the first 5 offsets here)
    off[:4] = torch.tensor([[0.0, -3.0], [-2.0, 0.0], [0.0, 3.0], [2.5, 0.0]])  # top, left, bottom, right
    pred = post("pose_bbox")(outputs("pose_bbox", 1, [(0, 4, 4, 0, 0.9, off)]), meta(), STRIDES)[0]
    torch.testing.assert_close(pred.boxes[0], torch.tensor([16.0, 8.0, 52.0, 56.0]))
    torch.testing.assert_close(pred.keypoints[0, :, :2], 32.0 + off[:17] * 8)


def test_batched_nms_topk_equals_full_nms() -> None:
    from torchvision.ops import batched_nms

    from lsvr_lsnet.postprocess import batched_nms_topk

    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(6000, 2, generator=gen) * 200
    boxes = torch.cat([xy, xy + 10 + torch.rand(6000, 2, generator=gen) * 40], dim=1)
    scores = torch.randperm(6000, generator=gen).float() / 6000  # distinct scores: no tie-order ambiguity
    labels = torch.randint(0, 5, (6000,), generator=gen)
    for k, chunk in ((100, 50), (100, 1000), (3000, 200)):
        expected = batched_nms(boxes, scores, labels, 0.6)[:k]
        assert torch.equal(batched_nms_topk(boxes, scores, labels, 0.6, k, chunk), expected)
