"""Per-image semantic maps (stuffthingmaps convention) follow the image's resize and flip: derived things-only
maps agree with the instance masks in the input frame; missing or mis-sized PNGs are data errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

from lsvr_core.errors import DataError
from lsvr_data.coco import build_coco
from lsvr_data.config import CocoDatasetConfig, PipelineConfig
from lsvr_data.semantic import write_things_maps

IDS = [84533, 163497]


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_things_maps_follow_resize_and_flip(coco_mini: Path, tmp_path: Path, flip: float) -> None:
    ann = coco_mini / "annotations" / "instances_train2017.json"
    written = write_things_maps(ann, tmp_path / "maps", IDS)
    assert len(written) == 2
    cfg = CocoDatasetConfig(split="train2017", with_masks=True, semantic_dir=str(tmp_path / "maps"),
                            pipeline=PipelineConfig(scale=(333, 200), flip_prob=flip))
    dataset = build_coco(cfg, root=coco_mini, train=True, task="segm")
    for i, rec in enumerate(dataset.records):
        if rec.image_id not in IDS:
            continue
        _, t = dataset[i]
        assert t.flipped == (flip == 1.0)
        assert t.semantic.dtype == torch.uint8 and tuple(t.semantic.shape) == t.image_size
        for mask, label in zip(t.masks, t.labels, strict=True):
            inside = t.semantic[mask.bool()]
            cat = dataset.label_to_cat_id[int(label)] - 1
            assert (inside == cat).float().mean() > 0.8  # nearest resize of both; overlaps aside
        assert (t.semantic[t.masks.sum(0) == 0] == 255).float().mean() > 0.95


def test_missing_and_missized_maps_are_data_errors(coco_mini: Path, tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    cfg = CocoDatasetConfig(split="train2017", semantic_dir=str(tmp_path / "maps"))
    dataset = build_coco(cfg, root=coco_mini, train=False, task="bbox")
    with pytest.raises(DataError, match="not found"):
        dataset[0]
    stem = Path(dataset.records[0].file).stem
    write_png(torch.zeros(1, 5, 5, dtype=torch.uint8), str(tmp_path / "maps" / f"{stem}.png"))
    with pytest.raises(DataError, match="differs from its image"):
        dataset[0]
    with pytest.raises(DataError, match="not a folder"):
        build_coco(CocoDatasetConfig(split="train2017", semantic_dir="nope"), root=coco_mini, train=False, task="bbox")
