"""Captions outside their boxes, and the evaluation gallery: ground truth | predictions, upscaled."""

from __future__ import annotations

import torch

from lsvr_core.gallery import display_scale, draw_gallery
from lsvr_core.structures import Predictions, Targets
from lsvr_core.visualize import color, draw_labels, read_image


def test_caption_sits_above_the_box_not_inside():
    image = torch.zeros((3, 100, 120), dtype=torch.uint8)
    out = draw_labels(image, torch.tensor([[30.0, 50.0, 90.0, 95.0]]), ["person 0.90"], [color(0)])
    assert out[:, 51:95, 31:90].sum() == 0  # nothing drawn inside the box
    assert out[:, 30:50, 30:90].sum() > 0  # the tag is above it
    top = draw_labels(image, torch.tensor([[30.0, 0.0, 90.0, 40.0]]), ["x"], [color(0)])
    assert top[:, 1:40, 31:90].sum() == 0 and top[:, 41:60, 30:90].sum() > 0  # no room above: below


class _DS:
    """Two 64x48 images, one box each, no resize (scale 1)."""

    def __getitem__(self, i):
        image = torch.full((3, 48, 64), 40, dtype=torch.uint8)
        meta = Targets(boxes=torch.tensor([[8.0, 8.0, 40.0, 40.0]]), labels=torch.tensor([1]), image_id=i,
                       orig_size=(48, 64), image_size=(48, 64))
        return image, meta


def test_gallery_rows_are_ground_truth_and_predictions(tmp_path):
    preds = [(i, Predictions(boxes=torch.tensor([[20.0, 10.0, 60.0, 44.0]]), scores=torch.tensor([0.8]),
                             labels=torch.tensor([0]), image_id=i, frame="original")) for i in range(2)]
    path = draw_gallery(_DS(), preds, num=2, out_path=tmp_path / "g.png", class_names=["a", "b"])
    img = read_image(path)
    f = display_scale((48, 64))
    assert f == 10.0 or f == 4.0  # 480 / 48 = 10, capped at 4
    h, w = round(48 * f), round(64 * f)
    assert tuple(img.shape) == (3, 2 * (h + 8), 2 * w + 8)
    # left panel: the ground-truth box (label 1) at 4x; right panel: the prediction (label 0) at 4x
    assert tuple(img[:, 24 * 4, 8 * 4].tolist()) == color(1)
    assert tuple(img[:, 30 * 4, w + 8 + 20 * 4].tolist()) == color(0)
    assert tuple(img[:, 30 * 4, 20 * 4].tolist()) == (40, 40, 40)  # no prediction drawn on the left
