"""The synthetic dataset: deterministic per (seed, split, index), 4 classes, sizes 12-60 % of the side,
objects visible where their boxes say, and AP 1.000 for its ground truth fed back as predictions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsvr_core.structures import Predictions
from lsvr_data.coco_eval import build_coco_evaluator
from lsvr_data.config import CocoEvaluatorConfig, SyntheticDatasetConfig
from lsvr_data.synthetic import KEYPOINT_LAYOUT, build_synthetic

torch.set_num_threads(1)


def make(task: str = "bbox", train: bool = False, **kw):  # noqa: ANN003, ANN201
    return build_synthetic(SyntheticDatasetConfig(**kw), root=Path("."), train=train, task=task)


def test_deterministic_per_seed_split_index() -> None:
    a, b = make(num_images=6, split="val"), make(num_images=12, split="val")
    for i in range(6):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1].boxes, b[i][1].boxes)
    c, d = make(num_images=6, split="train"), make(num_images=6, split="val", seed=1)
    assert not torch.equal(a[0][0], c[0][0]) and not torch.equal(a[0][0], d[0][0])


def test_classes_sizes_and_layout() -> None:
    ds = make(num_images=64, image_size=128, split="train")
    assert ds.classes == ["rectangle", "ellipse", "triangle", "star"] and len(ds) == 64
    assert ds.aspect_ratios() == [1.0] * 64
    labels = torch.cat([torch.as_tensor(r.labels) for r in ds.records])
    assert set(labels.tolist()) == {0, 1, 2, 3}
    for r in ds.records:
        wh = r.boxes[:, 2:] - r.boxes[:, :2]
        assert (wh >= 0.12 * 128 - 1e-3).all() and (wh <= 0.6 * 128 + 1e-3).all()
        assert 1 <= len(r) <= 4


def test_objects_are_drawn_inside_their_boxes() -> None:
    """Inside an object (its polygon centre region) the colour is uniform-ish and differs from the border ring
    just outside its box: the rendering matches the boxes."""
    ds = make(num_images=16, image_size=128, task="pose_bbox")
    contrasts = []
    for i in range(len(ds)):
        img, t = ds[i]
        img = img.float()
        for box, kp in zip(t.boxes, t.keypoints, strict=True):
            x1, y1, x2, y2 = box.round().long().tolist()
            cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
            inside = img[:, cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(3, -1).mean(1)
            ring = torch.cat([img[:, max(y1 - 2, 0), x1:x2], img[:, min(y2 + 1, 127), x1:x2]], dim=1).mean(1)
            contrasts.append((inside - ring).abs().sum().item())
            # the 17 landmarks follow the person-like layout in box coordinates
            centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2
            torch.testing.assert_close(kp[:, :2], centre + torch.as_tensor(KEYPOINT_LAYOUT).float() * half)
            assert (kp[:, 2] == 2).all()
    assert torch.tensor(contrasts).median() > 60


@pytest.mark.parametrize("task,iou_types", [("segm", ["bbox", "segm"]), ("pose_kbox", ["bbox", "keypoints"])])
def test_gt_as_predictions(task: str, iou_types: list[str]) -> None:
    ds = make(task=task, num_images=32, split="val", with_masks=task == "segm", landmarks=True)
    assert ds.coco_gt().getImgIds() == [r.image_id for r in ds.records]
    ev = build_coco_evaluator(CocoEvaluatorConfig(), dataset=ds, task=task)
    assert ev.iou_types == iou_types
    for i in range(len(ds)):
        _, t = ds[i]
        p = Predictions(t.boxes, torch.ones(len(t)), t.labels, t.image_id, keypoints=t.keypoints,
                        masks=None if t.masks is None else t.masks.bool())
        ev.process([p.to_original(t)])
    m = ev.evaluate()
    for iou in iou_types:
        assert m[f"{iou}/AP"] == pytest.approx(1.0), (iou, m)


def test_contours_score_high_segm_ap() -> None:
    """Predicted 36-point contours are rasterised by the evaluator: the GT contours reach AP50 1.0."""
    ds = make(task="segm", num_images=16, split="val")
    ev = build_coco_evaluator(CocoEvaluatorConfig(iou_types=["segm"]), dataset=ds, task="segm")
    for i in range(len(ds)):
        t = ds.targets(i)
        ev.process([Predictions(t.boxes, torch.ones(len(t)), t.labels, t.image_id, contours=t.extra("contours"),
                                frame="original")])
    m = ev.evaluate()
    assert m["segm/AP50"] == pytest.approx(1.0) and m["segm/AP"] > 0.8
