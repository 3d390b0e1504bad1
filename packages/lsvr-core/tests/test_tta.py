"""Test-time augmentation (eval.test_time_aug): mmdetection's keep-ratio sizes, flip round trip of images and
predictions (boxes and landmark order), scale ranges, box voting against hand-computed numbers, NMS merge."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lsvr_core.config import sections
from lsvr_core.engine.optim import Precision
from lsvr_core.engine.tta import augmented_inputs, box_vote, merge_predictions, predict_tta, rescale_size
from lsvr_core.errors import ConfigError
from lsvr_core.fields import TargetFieldSpec
from lsvr_core.structures import Predictions

CPU = torch.device("cpu")
EXTREMES = TargetFieldSpec("extreme_points", "points", flip_perm=(0, 3, 2, 1))  # as LSNet declares them
FP32 = Precision("cpu", None)


class RectangleFinder(nn.Module):
    """A 'detector' that boxes the bright pixels of each input image (input frame), with extreme points
    (top, left, bottom, right) chosen so that left and right are distinguishable (left at the top row, right at
    the bottom row), then maps them to the original frame like the engine's Detector."""

    def forward(self, batch):
        out = []
        for img, meta in zip(batch.images, batch.targets, strict=True):
            h, w = meta.image_size
            ys, xs = (img[0, :h, :w] > 128).nonzero(as_tuple=True)
            x0, y0, x1, y1 = xs.min().float(), ys.min().float(), xs.max().float() + 1, ys.max().float() + 1
            ext = torch.stack([torch.stack([(x0 + x1) / 2, y0]), torch.stack([x0, y0]),
                               torch.stack([(x0 + x1) / 2, y1]), torch.stack([x1, y1])])[None]
            pred = Predictions(torch.stack([x0, y0, x1, y1])[None], torch.tensor([0.9]), torch.tensor([0]),
                               meta.image_id)
            pred.extras.add(EXTREMES, ext)
            out.append(pred.to_original(meta))
        return out


def _image() -> torch.Tensor:
    img = torch.zeros(3, 60, 100, dtype=torch.uint8)
    img[:, 10:30, 20:50] = 255  # box (20, 10, 50, 30)
    return img


def test_rescale_size_follows_mmdetection():
    assert rescale_size(480, 640, (1333, 800)) == (800, 1067, 800 / 480)
    assert rescale_size(427, 640, (3000, 400)) == (400, 600, 400 / 427)
    assert rescale_size(100, 3000, (1333, 800))[:2] == (44, 1333)  # the long edge binds


def test_flip_round_trip_of_images_and_predictions():
    image = _image()
    augs = list(augmented_inputs(image, 7, [(100, 60), (200, 120)], flip=True))
    assert [(i, m.flipped, m.image_size) for i, _, m in augs] == [
        (0, False, (60, 100)), (0, True, (60, 100)), (1, False, (120, 200)), (1, True, (120, 200))]
    torch.testing.assert_close(augs[1][1].flip(-1), augs[0][1])  # flipping the flipped image gives the image back
    model = RectangleFinder()
    cfg = sections.TestTimeAugSection(enabled=True, scales=[(100, 60), (200, 120)], flip=True, merge="nms", nms_iou=0.5)
    from lsvr_core.engine import tta

    seen = []
    original = tta.merge_predictions
    tta.merge_predictions = lambda preds, c, i: seen.extend(preds) or original(preds, c, i)
    try:
        merged = predict_tta(model, image, 7, cfg, device=CPU, precision=FP32, size_divisor=32)
    finally:
        tta.merge_predictions = original
    expected_ext = torch.tensor([[[35.0, 10.0], [20.0, 10.0], [35.0, 30.0], [50.0, 30.0]]])
    for pred in seen:  # each of the 4 augmentations, in the original frame, landmarks in their original roles
        torch.testing.assert_close(pred.boxes, torch.tensor([[20.0, 10.0, 50.0, 30.0]]))
        ext = pred.extras.get("extreme_points")
        torch.testing.assert_close(ext[:, [0, 2]], expected_ext[:, [0, 2]])  # top, bottom
        torch.testing.assert_close(ext[..., 0], expected_ext[..., 0])  # x: left 20, right 50
    # unflipped: left point (20, 10), right (50, 30); a flipped pass sees left at the top row of the mirror image,
    # which is the original's right edge: after un-mirroring and relabelling, 'left' is x = 20 again
    assert all(p.extras.get("extreme_points")[0, 1, 0] == 20 and p.extras.get("extreme_points")[0, 3, 0] == 50
               for p in seen)
    assert len(merged) == 1 and merged.image_id == 7 and merged.frame == "original"


def test_scale_ranges_drop_boxes_by_their_size_at_that_scale():
    image = _image()  # box 30 x 20: sqrt(area) 24.5 at scale 1, 49 at scale 2
    cfg = sections.TestTimeAugSection(enabled=True, scales=[(100, 60), (200, 120)], flip=False, merge="nms",
                             scale_ranges=[(0, 30), (0, 30)])
    seen = []
    from lsvr_core.engine import tta

    original = tta.merge_predictions
    tta.merge_predictions = lambda preds, c, i: seen.extend(preds) or original(preds, c, i)
    try:
        predict_tta(RectangleFinder(), image, 0, cfg, device=CPU, precision=FP32, size_divisor=32)
    finally:
        tta.merge_predictions = original
    assert [len(p) for p in seen] == [1, 0]
    with pytest.raises(ValueError, match="scale_ranges has 1 entries but scales has 2"):
        sections.TestTimeAugSection(scales=[(1, 1), (2, 2)], scale_ranges=[(0, 1)])


def test_box_vote_hand_computed():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.6, 0.3])
    vectors = torch.tensor([[1.0], [4.0], [7.0]])
    b, s, v = box_vote(boxes, scores, vectors, 0.66, 0.05)
    # cluster {0, 1}: IoU 100 / 110 = 0.909; mean weighted by 0.9, 0.6: y2 = (9 + 6.6) / 1.5 = 10.4, vector 2.2,
    # score max 0.9; soft copies: 0.9 * 0 (dropped), 0.6 * (1 - 0.909) = 0.0545 (kept); lone box 2 kept as is
    torch.testing.assert_close(b, torch.tensor([[0.0, 0.0, 10.0, 10.4], [50.0, 50.0, 60.0, 60.0],
                                                [0.0, 0.0, 10.0, 11.0]]))
    torch.testing.assert_close(s, torch.tensor([0.9, 0.3, 0.6 * (1 - 100 / 110)]))
    torch.testing.assert_close(v, torch.tensor([[2.2], [7.0], [4.0]]))
    b, s, v = box_vote(boxes[:1], scores[:1], vectors[:1], 0.66, 0.05)
    assert len(b) == 0  # reference quirk: a class with one detection in all augmentations yields nothing


def test_merge_vote_per_class_and_mask_error():
    p1 = Predictions(torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]), torch.tensor([0.8, 0.7]),
                     torch.tensor([0, 1]), 3, keypoints=torch.ones(2, 17, 3), frame="original")
    p2 = Predictions(torch.tensor([[1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 10.0, 10.0]]), torch.tensor([0.4, 0.7]),
                     torch.tensor([0, 1]), 3, keypoints=torch.full((2, 17, 3), 3.0), frame="original")
    cfg = sections.TestTimeAugSection(enabled=True)
    out = merge_predictions([p1, p2], cfg, 3)
    # class 0: one voted box (0.8) + the soft copy 0.4 * (1 - 90/110); class 1: identical boxes, one voted box
    assert sorted(out.labels.tolist()) == [0, 0, 1]
    torch.testing.assert_close(out.scores, torch.tensor([0.8, 0.7, 0.4 * (1 - 90 / 110)]))
    k0 = out.keypoints[out.labels == 0][0]  # (0.8 * 1 + 0.4 * 3) / 1.2 = 5/3, scores column 1
    torch.testing.assert_close(k0[:, :2], torch.full((17, 2), 2.0 / 1.2))
    assert (k0[:, 2] == 1).all()
    masked = Predictions(p1.boxes, p1.scores, p1.labels, 3, masks=torch.zeros(2, 4, 4), frame="original")
    with pytest.raises(ConfigError, match="use merge: nms"):
        merge_predictions([masked], cfg, 3)


def test_unflip_relabels_extras_contours_and_keypoints():
    from lsvr_core.engine.tta import unflip_landmark_order

    contour = torch.arange(8.0).view(1, 4, 2)  # points 0..3
    kps = torch.arange(17.0).view(1, 17, 1).repeat(1, 1, 3)
    pred = Predictions(torch.zeros(1, 4), torch.ones(1), torch.zeros(1, dtype=torch.int64), 0, contours=contour,
                       keypoints=kps, frame="original")
    pred.extras.add(EXTREMES, torch.arange(8.0).view(1, 4, 2))
    out = unflip_landmark_order(pred)
    assert out.contours[0, :, 0].tolist() == [0.0, 6.0, 4.0, 2.0]  # same start, reversed direction
    assert out.keypoints[0, :5, 0].tolist() == [0.0, 2.0, 1.0, 4.0, 3.0]  # nose stays, eyes / ears swap
    assert out.extras.get("extreme_points")[0, :, 0].tolist() == [0.0, 6.0, 4.0, 2.0]  # left <-> right
