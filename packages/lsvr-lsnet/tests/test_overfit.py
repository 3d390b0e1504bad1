"""Overfit LSNet on 4 real coco_mini train2017 images (CPU) and score it with pycocotools on the same images.

Issue 6 "Done when": bbox AP50 >= 0.8, segm AP50 >= 0.5, keypoint AP50 >= 0.5. To fit the CI budget the model
is small: a randomly initialised ResNet-18 kept frozen (its BatchNorm still normalises with batch statistics),
a 32-channel GN-FPN and a 32-channel LSNet head with plain towers, 160 x 256 px inputs, no augmentation. The
training loop is a plain AdamW loop over the one batch of 4 images; evaluation goes through the registered
``coco`` evaluator (pycocotools COCOeval) on a dataset that reads the same 4-image annotation file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lsvr_core.config import build_config_model
from lsvr_core.config.loader import validate
from lsvr_core.engine.build import build_dataset, build_evaluator, build_model
from lsvr_core.plugins import get_plugin_manager
from lsvr_core.structures import collate

# images with a few medium/large objects (instances) or labelled persons (keypoints)
IMAGES = {"bbox": [249346, 84533, 172123, 187334], "segm": [249346, 84533, 172123, 187334],
          "pose_bbox": [535506, 84533, 37666, 30752]}
ITERS = {"bbox": 150, "segm": 150, "pose_bbox": 150}
CPV_ITERS = 75
TTA_ITERS = 120


def four_image_annotations(coco_mini: Path, task: str, out: Path) -> Path:
    """Copy of the train2017 annotation file restricted to the task's 4 images."""
    name = "person_keypoints_train2017.json" if task.startswith("pose") else "instances_train2017.json"
    data = json.loads((coco_mini / "annotations" / name).read_text())
    keep = set(IMAGES[task])
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    assert len(data["images"]) == 4
    out.write_text(json.dumps(data))
    return out


def train_overfit(coco_mini: Path, tmp_path: Path, task: str, head: dict | None = None, iters: int | None = None,
                  flip_prob: float = 0.0) -> tuple[Any, Any, Any, Any]:
    """Train on the 4 images; returns (model in eval mode, cfg, manager, the 4-image val dataset)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)  # see the root conftest: 2 threads on a busy 2-core machine stall
    ann = four_image_annotations(coco_mini, task, tmp_path / "ann.json")
    dataset = {"type": "coco", "split": "train2017", "ann_file": str(ann), "landmarks": task == "bbox",
               "pipeline": {"scale": [256, 160], "flip_prob": 0.0}}
    train_dataset = {**dataset, "pipeline": {"scale": [256, 160], "flip_prob": flip_prob}}
    raw = {
        "task": task,
        "model": {
            "num_classes": 1 if task.startswith("pose") else 80,
            "backbone": {"type": "resnet", "depth": 18, "frozen_stages": 4, "norm": "bn", "norm_eval": False},
            "neck": {"type": "fpn", "out_channels": 32, "norm": "gn", "extra_source": "c5", "extra_relu": False},
            "head": {"type": "lsnet", "feat_channels": 32, "stacked_convs": 1, "conv_module": "plain",
                     "norm_groups": 16, **(head or {})},
        },
        "data": {"root": str(coco_mini), "train": train_dataset, "val": dataset},
        "eval": {"evaluator": {"type": "coco"}},
    }
    manager = get_plugin_manager()
    cfg = validate(raw, build_config_model(manager), "overfit")
    model = build_model(cfg, manager)
    train_set, val_set = build_dataset(cfg, manager, train=True), build_dataset(cfg, manager, train=False)
    assert len(train_set) == 4
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    iters = iters or ITERS[task]
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=iters, pct_start=0.1)
    model.train()
    for it in range(iters):
        if it == 0 or flip_prob > 0:  # a new random flip of each image per iteration
            train_set.set_epoch(it)
            batch = collate([train_set[i] for i in range(len(train_set))])
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 35.0)
        optimizer.step()
        schedule.step()
    return model.eval(), cfg, manager, val_set


def overfit(coco_mini: Path, tmp_path: Path, task: str, head: dict | None = None,
            iters: int | None = None) -> dict[str, float]:
    model, cfg, manager, val_set = train_overfit(coco_mini, tmp_path, task, head, iters)
    evaluator = build_evaluator(cfg, manager, val_set)
    evaluator.reset()
    with torch.no_grad():
        evaluator.process(model(collate([val_set[i] for i in range(len(val_set))])))
    return evaluator.evaluate()


@pytest.mark.slow
@pytest.mark.parametrize(("task", "metric", "threshold"),
                         [("bbox", "bbox/AP50", 0.8), ("segm", "segm/AP50", 0.5), ("pose_bbox", "keypoints/AP50", 0.5)])
def test_overfit_four_coco_mini_images(coco_mini: Path, tmp_path: Path, task: str, metric: str,
                                       threshold: float) -> None:
    metrics = overfit(coco_mini, tmp_path, task)
    print(task, {k: round(v, 3) for k, v in metrics.items() if k.endswith(("/AP", "/AP50"))})  # shown with -s
    assert metrics[metric] >= threshold, {k: round(v, 3) for k, v in metrics.items() if "AP" in k}


@pytest.mark.slow
def test_cpv_overfits_four_coco_mini_images(coco_mini: Path, tmp_path: Path) -> None:
    """LSNet-CPV (``lscpv`` head: corner pooling, heatmaps, semantic branch, corner snapping), issue 16:
    bbox AP50 >= 0.8 on the 4 images it trained on."""
    metrics = overfit(coco_mini, tmp_path, "bbox", head={"type": "lscpv", "corner_dim": 16}, iters=CPV_ITERS)
    print("cpv", {k: round(v, 3) for k, v in metrics.items() if k.endswith(("/AP", "/AP50"))})  # shown with -s
    assert metrics["bbox/AP50"] >= 0.8, {k: round(v, 3) for k, v in metrics.items() if "AP" in k}


@pytest.mark.slow
def test_tta_does_not_lower_ap_of_a_trained_model(coco_mini: Path, tmp_path: Path) -> None:
    """Issue 16: flip test-time augmentation with box voting (the reference's merge) on a model trained with
    random flips keeps (or raises) its box AP on the images it trained on."""
    from lsvr_core.engine import distributed as D
    from lsvr_core.engine.evaluate import predict_dataset, score
    from lsvr_core.engine.optim import Precision
    from lsvr_core.engine.tta import predict_dataset_tta

    model, cfg, manager, val_set = train_overfit(coco_mini, tmp_path, "bbox", iters=TTA_ITERS, flip_prob=0.5)
    evaluator = build_evaluator(cfg, manager, val_set)
    kw = dict(device=torch.device("cpu"), precision=Precision("cpu", None), dist=D.DistInfo(0, 1, 0), size_divisor=32)
    single = score(evaluator, predict_dataset(model, val_set, batch_size=4, num_workers=0, **kw))
    tta_cfg = cfg.eval.test_time_aug.model_copy(update={"enabled": True, "scales": [(256, 160)], "flip": True,
                                                        "merge": "vote"})
    tta = score(evaluator, predict_dataset_tta(model, val_set, tta_cfg, **kw))
    print("tta", {k: (round(single[k], 3), round(tta[k], 3)) for k in ("bbox/AP", "bbox/AP50", "bbox/AP75")})
    assert single["bbox/AP50"] >= 0.5  # the model did learn the 4 images
    assert tta["bbox/AP"] >= single["bbox/AP"], (single["bbox/AP"], tta["bbox/AP"])
