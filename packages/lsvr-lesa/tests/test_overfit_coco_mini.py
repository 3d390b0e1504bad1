"""Overfit test on 4 real coco_mini images: LESA-R50 Mask R-CNN (reduced width) trained from scratch on CPU
reaches box AP50 >= 0.8 and mask AP50 >= 0.5 on them, scored by pycocotools against the annotation file.

Setting (chosen for the CPU budget, stated here): the 4 train2017 images 84533, 163497, 172123, 187334
(the lowest ids among coco_mini images with 1-2 non-crowd instances, each >= 3% of the image; 6 instances),
short side 256 (long side <= 426), no flip; LESA-R50 with width 16 (a quarter of ResNet-50's, 8 heads,
LESA in c4/c5 and DCN v1 in c3-c5 as in the reference), exact train-mode BatchNorm (``norm_eval: false``,
nothing frozen), FPN 64 channels P2-P6, lighter RoI heads, AdamW lr 2e-3 for 45 full-batch steps then 2e-4 for 15.
"""

from __future__ import annotations

import contextlib
import io
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
def test_lesa_r50_mask_rcnn_overfits_four_coco_mini_images(coco_mini: Path) -> None:
    import pycocotools.mask as mask_util

    from lsvr_core.builtin.configs import FPNConfig
    from lsvr_core.builtin.mask_rcnn_config import MaskRCNNHeadConfig
    from lsvr_core.models.detector import Detector
    from lsvr_core.models.fpn import build_fpn
    from lsvr_core.models.mask_rcnn import build_mask_rcnn_head
    from lsvr_core.structures import collate
    from lsvr_data.coco import build_coco
    from lsvr_data.config import CocoDatasetConfig, PipelineConfig
    from lsvr_lesa.backbone import build_lesa_r50
    from lsvr_lesa.config import LESAR50Config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data_cfg = CocoDatasetConfig(split="train2017", with_masks=True,
                                 pipeline=PipelineConfig(scale=(426, 256), flip_prob=0.0))
    dataset = build_coco(data_cfg, root=coco_mini, train=False, task="segm")
    batch = collate([dataset[i] for i in range(len(dataset)) if dataset.records[i].image_id in IMAGE_IDS])
    assert sorted(t.image_id for t in batch.targets) == IMAGE_IDS
    assert sum(len(t) for t in batch.targets) == 6 and all(t.masks is not None for t in batch.targets)

    backbone = build_lesa_r50(LESAR50Config(width=16, max_input_size=448, norm_eval=False, frozen_stages=-1,
                                              zero_init_residual=False))
    neck = build_fpn(FPNConfig(out_channels=64, in_levels=("c2", "c3", "c4", "c5"), num_extra=1),
                     backbone.output_shape())
    head_cfg = MaskRCNNHeadConfig(representation_size=256, mask_head_channels=64, box_batch_size_per_image=64,
                                  rpn_pre_nms_top_n_train=500, rpn_post_nms_top_n_train=300,
                                  rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=100, roi_sampling_ratio=2)
    head = build_mask_rcnn_head(head_cfg, neck.output_shape(), len(dataset.classes), "segm")
    model = Detector(backbone, neck, head, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.train()
    first = None
    for step in range(60):
        if step == 45:
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

    model.eval()
    with torch.no_grad():
        predictions = model(batch)  # original frame (to_original applied by the detector)
    results = []
    for pred, target in zip(predictions, batch.targets, strict=True):
        assert pred.masks is not None and pred.masks.shape[1:] == target.orig_size
        for box, score, label, mask in zip(pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist(),
                                           pred.masks, strict=True):
            rle = mask_util.encode(np.asfortranarray((mask > 0.5).numpy().astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            results.append({"image_id": target.image_id, "category_id": dataset.label_to_cat_id[label],
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score,
                            "segmentation": rle})
    ann_file = coco_mini / "annotations" / "instances_train2017.json"
    box_ap50 = _coco_ap50(ann_file, results, "bbox")
    mask_ap50 = _coco_ap50(ann_file, results, "segm")
    assert box_ap50 >= 0.8, (box_ap50, mask_ap50)
    assert mask_ap50 >= 0.5, (box_ap50, mask_ap50)
