"""Drawing predictions: box outlines in the class colour, mask blending by the alpha formula, contour
polygons, keypoints with visibility, score threshold, PNG round trip."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.structures import Predictions
from lsvr_core.visualize import COCO_SKELETON, color, draw_predictions, read_image, resize_to, save_png


def _pred(**kw) -> Predictions:
    base = dict(boxes=torch.tensor([[10.0, 20.0, 50.0, 60.0]]), scores=torch.tensor([0.9]), labels=torch.tensor([2]))
    base.update(kw)
    return Predictions(**base)


def test_box_outline_in_class_colour_and_threshold():
    image = torch.zeros((3, 80, 100), dtype=torch.uint8)
    out = draw_predictions(image, _pred(), ["a", "b", "c"], score_thresh=0.5)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert tuple(out[:, 40, 10].tolist()) == color(2)  # left edge, away from the caption
    assert tuple(out[:, 40, 30].tolist()) == (0, 0, 0)  # inside stays (no fill)
    assert out[:, 70:, :].sum() == 0  # nothing below the box
    assert torch.equal(draw_predictions(image, _pred(), score_thresh=0.95), image)  # below threshold: untouched


def test_mask_blend_follows_alpha_formula():
    image = torch.full((3, 60, 60), 100, dtype=torch.uint8)
    masks = torch.zeros((1, 60, 60))
    masks[0, 30:40, 30:40] = 0.9  # away from the caption at the box's top-left corner
    out = draw_predictions(image, _pred(boxes=torch.tensor([[2.0, 2.0, 55.0, 55.0]]), masks=masks))
    want = [100 * 0.55 + c * 0.45 for c in color(2)]  # draw_segmentation_masks: img (1 - a) + colour a
    assert [abs(a - b) <= 1 for a, b in zip(out[:, 35, 35].tolist(), want, strict=True)] == [True] * 3
    assert out[:, 45, 45].tolist() == [100, 100, 100]


def test_contour_polygon_and_keypoints():
    image = torch.zeros((3, 100, 64), dtype=torch.uint8)  # caption tag of the dummy box: y 80-98
    square = torch.tensor([[[10.0, 10.0], [50.0, 10.0], [50.0, 50.0], [10.0, 50.0]]])
    out = draw_predictions(image, _pred(boxes=torch.tensor([[60.0, 98.0, 61.0, 99.0]]), contours=square))
    assert tuple(out[:, 10, 30].tolist()) == color(2)  # on the top side of the polygon
    assert tuple(out[:, 30, 50].tolist()) == color(2)  # on the right side (closing the ring)
    assert out[:, 30, 30].sum() == 0
    kps = torch.zeros((1, 17, 3))
    kps[0, :, 0], kps[0, :, 1] = torch.arange(17) * 3.0 + 5, 40.0
    kps[0, :, 2] = 0.9
    kps[0, 16, 2] = 0.0  # invisible: not drawn
    kps[0, 16, :2] = torch.tensor([30.0, 10.0])
    out = draw_predictions(image, _pred(boxes=torch.tensor([[60.0, 98.0, 61.0, 99.0]]), keypoints=kps))
    assert tuple(out[:, 43, 5].tolist()) == color(2)  # keypoint dot (radius 3) below the line
    assert out[:, 40, 6:9].tolist() == [[255] * 3] * 3  # skeleton line 0-1 between (5,40) and (8,40)
    assert out[:, 10, 30].sum() == 0
    assert len(COCO_SKELETON) == 19 and max(max(p) for p in COCO_SKELETON) == 16


def test_png_round_trip_and_resize(tmp_path):
    image = torch.randint(0, 256, (3, 13, 17), dtype=torch.uint8)
    path = save_png(image, tmp_path / "a" / "x.png")
    assert torch.equal(read_image(path), image)
    assert resize_to(image, (13, 17)) is image
    big = resize_to(torch.full((3, 4, 4), 7, dtype=torch.uint8), (8, 6))
    assert big.shape == (3, 8, 6) and big.unique().tolist() == [7]


def test_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        draw_predictions(torch.zeros((3, 4, 4)), _pred())
