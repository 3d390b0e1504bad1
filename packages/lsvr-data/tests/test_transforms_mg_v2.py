"""The MutualGuide v2 augmentation (spec §7 "Recipe", ``HEAD:data/data_augment.py``): the combined crop/expand is a
pure translation of a crop onto a mean-filled canvas, boxes move with the pixels, and windows that cut an object
(intersection over its area in (0.25, 0.75)) are never used."""

from __future__ import annotations

import pytest
import torch

from lsvr_data.config import PipelineConfig
from lsvr_data.sample import Sample
from lsvr_data.transforms import Pipeline


def coordinate_sample() -> Sample:
    """100 x 100 image whose pixel (x, y) holds (x, y, 255); two objects."""
    ys, xs = torch.meshgrid(torch.arange(100), torch.arange(100), indexing="ij")
    image = torch.stack([xs, ys, torch.full_like(xs, 255)]).to(torch.uint8)
    boxes = torch.tensor([[10.0, 20.0, 40.0, 60.0], [55.0, 50.0, 90.0, 95.0]])
    return Sample(image, boxes, torch.tensor([0, 1]), torch.zeros(2, dtype=torch.bool), torch.tensor([1, 2]), 7,
                  (100, 100))


def test_crop_expand_is_a_translation_with_mean_fill() -> None:
    pipe = Pipeline(PipelineConfig(resize="square", square_size=100, mg_v2_aug=True), train=True)
    changed = 0
    for seed in range(40):
        sample = coordinate_sample()
        fill = round(float(sample.image.float().mean()))
        before = sample.boxes.clone()
        pipe._crop_expand_v2(sample, torch.Generator().manual_seed(seed))
        if sample.size == (100, 100) and torch.equal(sample.boxes, before):
            continue  # every window rejected: unchanged
        changed += 1
        img = sample.image.long()
        content = img[2] == 255
        assert bool(content.any())
        assert bool((img[:, ~content] == fill).all())  # the canvas is the image's mean grey
        ys, xs = content.nonzero(as_tuple=True)
        dx = (img[0][content] - xs).unique()
        dy = (img[1][content] - ys).unique()
        assert len(dx) == 1 and len(dy) == 1  # one translation for every pixel
        ids = sample.ann_ids.tolist()
        orig = coordinate_sample().boxes[[i - 1 for i in ids]]
        shifted = orig - torch.tensor([dx.item(), dy.item(), dx.item(), dy.item()])
        h, w = sample.size
        expected = torch.stack([shifted[:, 0].clamp(xs.min().item(), xs.max().item() + 1),
                                shifted[:, 1].clamp(ys.min().item(), ys.max().item() + 1),
                                shifted[:, 2].clamp(xs.min().item(), xs.max().item() + 1),
                                shifted[:, 3].clamp(ys.min().item(), ys.max().item() + 1)], 1)
        torch.testing.assert_close(sample.boxes, expected)  # boxes move with the pixels, clipped to the crop
        # kept objects are inside the window by more than 75 % or less than 25 % of their area
        area_kept = (expected[:, 2:] - expected[:, :2]).prod(1) / (orig[:, 2:] - orig[:, :2]).prod(1)
        assert bool(((area_kept >= 0.75 - 1e-3) | (area_kept <= 0.25 + 1e-3)).all()), area_kept
        assert w >= 1 and h >= 1
    assert changed >= 10


def test_full_v2_pipeline_output_size_and_config_check() -> None:
    pipe = Pipeline(PipelineConfig(resize="square", square_size=64, mg_v2_aug=True), train=True)
    out = pipe(coordinate_sample(), torch.Generator().manual_seed(0))
    assert out.size == (64, 64) and len(out.boxes) >= 1
    with pytest.raises(ValueError, match="mg_v2_aug needs resize: square"):
        PipelineConfig(mg_v2_aug=True)
