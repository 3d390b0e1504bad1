"""Overfit test of the built-in HTC head on 4 real coco_mini images: box and mask AP50 >= 0.5 (pycocotools
against the annotation file) after a short CPU training, with the semantic branch trained on things-only
semantic maps derived from the instance masks (``lsvr_data.semantic.write_things_maps``; coco_mini has no
COCO-stuff maps).

Setting (chosen for the CPU budget): the 4 train2017 images of the LESA overfit test (84533, 163497, 172123,
187334; 6 instances), short side 256, no flip; torchvision ResNet-18 from scratch (BatchNorm training), FPN 64
channels P2-P5 (P6 max-pooled in the head), HTC with the reference's structure (3 stages, IoU 0.5/0.6/0.7,
weights 1/0.5/0.25, interleaved, mask information flow, semantic branch 183 classes) and lighter RoI heads
(FC 128, 4 mask convs of 32 channels, 32 RoIs per image and stage, 100 proposals); AdamW lr 2e-3 for 30
full-batch steps then 2e-4 for 10.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch

IMAGE_IDS = [84533, 163497, 172123, 187334]


def _coco_ap50(ann_file: Path, results: list[dict], iou_type: str) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        if not results:
            return 0.0
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.params.imgIds = IMAGE_IDS
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])


@pytest.mark.slow
def test_htc_overfits_four_coco_mini_images(coco_mini: Path, tmp_path: Path) -> None:
    import pycocotools.mask as mask_util

    from lsvr_core.builtin.configs import FPNConfig, ResNetConfig
    from lsvr_core.builtin.htc_config import HTCHeadConfig
    from lsvr_core.models.detector import Detector
    from lsvr_core.models.fpn import build_fpn
    from lsvr_core.models.htc.head import build_htc_head
    from lsvr_core.models.resnet import build_resnet
    from lsvr_core.structures import collate
    from lsvr_data.coco import build_coco
    from lsvr_data.config import CocoDatasetConfig, PipelineConfig
    from lsvr_data.semantic import write_things_maps

    start = time.perf_counter()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ann_file = coco_mini / "annotations" / "instances_train2017.json"
    write_things_maps(ann_file, tmp_path / "stuffthingmaps", IMAGE_IDS)
    data_cfg = CocoDatasetConfig(split="train2017", with_masks=True, semantic_dir=str(tmp_path / "stuffthingmaps"),
                                 pipeline=PipelineConfig(scale=(426, 256), flip_prob=0.0))
    dataset = build_coco(data_cfg, root=coco_mini, train=False, task="segm")
    index = {r.image_id: i for i, r in enumerate(dataset.records)}
    batch = collate([dataset[index[i]] for i in IMAGE_IDS])
    assert all(t.semantic is not None and tuple(t.semantic.shape) == t.image_size for t in batch.targets)
    assert sum(len(t) for t in batch.targets) == 6

    backbone = build_resnet(ResNetConfig(depth=18, norm="bn", norm_eval=False, frozen_stages=-1,
                                         out_levels=("c2", "c3", "c4", "c5")))
    neck = build_fpn(FPNConfig(out_channels=64, in_levels=("c2", "c3", "c4", "c5"), num_extra=0),
                     backbone.output_shape())
    head_cfg = HTCHeadConfig(representation_size=128, mask_head_channels=32, box_batch_size_per_image=32,
                             rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=300,
                             rpn_post_nms_top_n_test=100, roi_sampling_ratio=2, box_score_thresh=0.05)
    head = build_htc_head(head_cfg, neck.output_shape(), len(dataset.classes), "segm")
    model = Detector(backbone, neck, head, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.train()
    first = None
    for step in range(40):
        if step == 30:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1
        losses = model(batch)
        total = sum(losses.values())
        assert torch.isfinite(total), losses
        first = first if first is not None else total.item()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert total.item() < 0.5 * first
    assert losses["loss_semantic"] < 0.2 * 5.2  # below the 183-class chance level ln(183) = 5.2, weighted

    model.eval()
    with torch.no_grad():
        predictions = model(batch)  # original frame (to_original pastes the RoI masks there)
    results = []
    for pred, target in zip(predictions, batch.targets, strict=True):
        assert pred.masks is not None and tuple(pred.masks.shape[1:]) == target.orig_size
        for box, score, label, mask in zip(pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist(),
                                           pred.masks, strict=True):
            rle = mask_util.encode(np.asfortranarray((mask > 0.5).numpy().astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            results.append({"image_id": target.image_id, "category_id": dataset.label_to_cat_id[label],
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score,
                            "segmentation": rle})
    box_ap50 = _coco_ap50(ann_file, results, "bbox")
    mask_ap50 = _coco_ap50(ann_file, results, "segm")
    print(f"HTC overfit: box AP50 {box_ap50:.3f}, mask AP50 {mask_ap50:.3f}, loss {first:.2f} -> {total.item():.2f}, "
          f"{time.perf_counter() - start:.1f} s")
    assert box_ap50 >= 0.5, (box_ap50, mask_ap50)
    assert mask_ap50 >= 0.5, (box_ap50, mask_ap50)
