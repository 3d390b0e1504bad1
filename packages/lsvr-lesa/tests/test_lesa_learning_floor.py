"""Learning floor (never skips, no data files): a tiny LESA Mask R-CNN learns boxes and masks of synthetic shapes.

Model: LESA-R50 at width 8 (an eighth of ResNet-50's; LESA blocks in c4/c5 and DCN v1 in c3-c5 as in the
reference, 8 heads, relative-position tables for 128 px inputs), train-mode BatchNorm, nothing frozen; 32-channel
FPN P2-P6; the built-in Mask R-CNN head with lighter RoI heads and anchors 16-256 px for the small images. Data: 8
synthetic 96 x 96 images with 1-3 shapes each and their instance masks, no augmentation. Training: 60 full-batch
AdamW steps, one-cycle, peak lr 2e-3, seed 0; scored by the coco evaluator (pycocotools) on the same images.

Measured (torch 2.14.1 CPU, 1 thread): bbox AP 0.626 (AP50 0.904), segm AP 0.526 (AP50 0.904), about 27
CPU-seconds. Floors: bbox AP >= 0.5, segm AP >= 0.42 (the backbone's outputs with x and y swapped score
0.447 and 0.341).
"""

from __future__ import annotations

import pytest

from lsvr_core.testing.floors import fit_and_score

FLOOR_BBOX_AP = 0.5
FLOOR_SEGM_AP = 0.42


def synthetic() -> dict:
    return {"type": "synthetic", "split": "train", "num_images": 8, "image_size": 96, "max_objects": 3,
            "with_masks": True, "pipeline": {"resize": "none", "flip_prob": 0.0}}


@pytest.mark.slow
def test_lesa_mask_rcnn_learns_synthetic_shapes() -> None:
    raw = {
        "task": "segm",
        "model": {
            "num_classes": 4,
            "backbone": {"type": "lesa_r50", "width": 8, "max_input_size": 128, "frozen_stages": -1,
                         "norm_eval": False},
            "neck": {"type": "fpn", "out_channels": 32, "in_levels": ["c2", "c3", "c4", "c5"], "num_extra": 1,
                     "extra_source": "p5"},
            "head": {"type": "mask_rcnn", "representation_size": 128, "mask_head_channels": 32,
                     "box_batch_size_per_image": 64, "rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 200,
                     "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 50, "roi_sampling_ratio": 2,
                     "anchor_sizes": [16, 32, 64, 128, 256]},
        },
        "data": {"root": ".", "train": synthetic(), "val": synthetic()},
        "eval": {"evaluator": {"type": "coco"}},
    }
    result = fit_and_score(raw, iters=60, lr=2e-3, seed=0)
    print("lesa mask rcnn", result.summary())  # shown with -s
    assert result.losses[-1] < 0.5 * result.losses[0], result.losses[::10]
    assert result.metrics["bbox/AP"] >= FLOOR_BBOX_AP, result.summary()
    assert result.metrics["segm/AP"] >= FLOOR_SEGM_AP, result.summary()
