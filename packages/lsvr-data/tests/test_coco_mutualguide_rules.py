"""``annotation_rules: mutualguide``: the MutualGuide v1 COCO reader (spec §5; ``V1:data/coco.py:150-161``) keeps
crowd boxes as objects and drops boxes whose clipped inclusive side is 6 px or less."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsvr_data.coco import build_coco, mutualguide_keeps
from lsvr_data.config import CocoDatasetConfig


def test_six_pixel_rule_hand_cases() -> None:
    # inclusive side = min(W - 1, x1 + w - 1) - x1 must exceed 6: w = 8 keeps (7), w = 7 drops (6)
    assert mutualguide_keeps([10, 10, 8, 8], 64, 100, 100)
    assert not mutualguide_keeps([10, 10, 7, 50], 350, 100, 100)
    assert not mutualguide_keeps([10, 10, 50, 50], 0, 100, 100)  # zero area
    assert not mutualguide_keeps([95, 10, 20, 20], 400, 100, 100)  # clipped at W - 1 = 99: side 4
    assert mutualguide_keeps([-3, 0, 12, 12], 144, 100, 100)  # x1 clamps to 0, x2 = 11


def test_coco_mini_counts_match_the_reference_rule(coco_mini: Path) -> None:
    data = json.loads((coco_mini / "annotations" / "instances_train2017.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    expected = 0  # restated independently: every annotation (crowd included) whose clipped sides exceed 6 px
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(width - 1, x1 + max(0, w - 1)), min(height - 1, y1 + max(0, h - 1))
        expected += a["area"] > 0 and x2 - x1 > 6 and y2 - y1 > 6
    base = build_coco(CocoDatasetConfig(split="train2017"), root=coco_mini, train=False, task="bbox")
    mg = build_coco(CocoDatasetConfig(split="train2017", annotation_rules="mutualguide"), root=coco_mini,
                    train=False, task="bbox")
    assert sum(len(r) for r in mg.records) == expected
    assert 0 < expected < sum(len(r) for r in base.records)  # some small boxes of coco_mini go
    assert not any(r.iscrowd.any() for r in mg.records)
    crowd_ids = {int(a["id"]) for a in data["annotations"] if a["iscrowd"]}
    kept = set(np.concatenate([r.ann_ids for r in mg.records]).tolist())
    assert crowd_ids & kept  # crowd regions are trained on as objects of their class


def test_max_dets_300_leaves_the_per_class_limit_to_cocoeval() -> None:
    """Spec §6: the reference keeps 300 detections per image over all classes and COCOeval then keeps 100 per
    class. One image, one GT of each of two classes; 150 confident false positives of class 1 and the one true
    positive of class 2 at a lower score. Keeping 100 per image loses the class-2 hit (its AP 0); keeping 300
    lets it through (AP 1, hand-computed: one detection, one GT, IoU 1)."""
    import torch

    from lsvr_core.structures import Predictions
    from lsvr_data.coco import quiet_coco
    from lsvr_data.coco_eval import CocoEvaluator

    gt = quiet_coco({
        "images": [{"id": 1, "width": 200, "height": 200}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500,
                         "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100, 100, 60, 60], "area": 3600,
                         "iscrowd": 0}]})
    junk = torch.tensor([[150.0, 10, 190, 40]]).repeat(150, 1)
    boxes = torch.cat([junk, torch.tensor([[100.0, 100, 160, 160]])])
    scores = torch.cat([torch.linspace(0.9, 0.8, 150), torch.tensor([0.5])])
    labels = torch.cat([torch.zeros(150, dtype=torch.int64), torch.ones(1, dtype=torch.int64)])
    pred = Predictions(boxes, scores, labels, image_id=1, frame="original")
    aps = {}
    for max_dets in (100, 300):
        ev = CocoEvaluator(gt, [1, 2], ["bbox"], class_names=["a", "b"], per_class=True, max_dets=max_dets)
        ev.process([pred])
        aps[max_dets] = ev.evaluate()["bbox/AP_b"]
    assert aps[100] == 0.0 and aps[300] == pytest.approx(1.0)
