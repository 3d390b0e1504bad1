"""`prepare(image)` (used by `lsvr predict`) equals the val-mode item of the same image."""

from __future__ import annotations

from pathlib import Path

import torch

from lsvr_core.plugins import get_plugin_manager
from lsvr_data.config import CocoDatasetConfig


def test_prepare_matches_val_item(coco_mini: Path) -> None:
    cfg = CocoDatasetConfig(split="val2017",
                            pipeline={"resize": "keep_ratio", "scale": [512, 320]})
    ds = get_plugin_manager().build("dataset", cfg, root=coco_mini, train=False, task="bbox")
    image, meta = ds[3]
    raw = ds.load_image(ds.records[3])
    prepared, pmeta = ds.prepare(raw, image_id=meta.image_id)
    assert torch.equal(prepared, image)
    assert pmeta.image_size == meta.image_size and pmeta.orig_size == meta.orig_size
    assert pmeta.scale == meta.scale and len(pmeta) == 0 and pmeta.image_id == meta.image_id
    assert max(pmeta.image_size) <= 512 and min(pmeta.image_size) <= 320
