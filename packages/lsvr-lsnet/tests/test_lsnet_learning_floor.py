"""Learning floors (never skip, no data files): LSNet learns the synthetic shapes in each task.

Model: ResNet-18 (from scratch, train-mode BatchNorm) + 32-channel GN-FPN + LSNet head (32 channels, one plain
tower conv), built from a run config by the plugin manager. Data: 8 synthetic 96 x 96 images with 1-3 shapes each
(the synthetic set gives every shape extreme points, a contour and 17 keypoint-like landmarks), no augmentation.
Training: full-batch AdamW, one-cycle schedule, seed 0; scored by the coco evaluator (pycocotools) on the same 8
images. Per task the floor sits well below the measured value and far above what an untrained model or a broken
landmark path (e.g. x and y swapped in decoding, landmark predictions detached from the loss) reaches.

Measured (torch 2.14.1 CPU, 1 thread; see FLOORS): value, CPU-seconds. The pose schedule is near its stability
limit: at peak lr 5e-3 the same run collapses to keypoints AP 0.
"""

from __future__ import annotations

import pytest

from lsvr_core.testing.floors import fit_and_score

# task -> (training steps, peak lr, metric, floor); measured values in the comments
FLOORS = {
    "bbox": (80, 3e-3, "bbox/AP", 0.25),  # measured: bbox AP 0.401 (AP50 0.891), about 34 CPU-s
    "segm": (80, 3e-3, "segm/AP", 0.4),  # measured: segm AP 0.588 (AP50 1.000), bbox AP 0.544, about 37 CPU-s
    "pose_bbox": (80, 3e-3, "keypoints/AP", 0.2),  # measured: keypoints AP 0.321 (AP50 0.558), about 42 CPU-s
}


def synthetic(task: str) -> dict:
    return {"type": "synthetic", "split": "train", "num_images": 8, "image_size": 96, "max_objects": 3,
            "landmarks": task == "bbox", "pipeline": {"resize": "none", "flip_prob": 0.0}}


def run_config(task: str) -> dict:
    return {
        "task": task,
        "model": {
            "num_classes": 4,
            "backbone": {"type": "resnet", "depth": 18, "frozen_stages": -1, "norm": "bn", "norm_eval": False},
            "neck": {"type": "fpn", "out_channels": 32, "norm": "gn", "extra_source": "c5", "extra_relu": False},
            "head": {"type": "lsnet", "feat_channels": 32, "stacked_convs": 1, "conv_module": "plain",
                     "norm_groups": 8},
        },
        "data": {"root": ".", "train": synthetic(task), "val": synthetic(task)},
        "eval": {"evaluator": {"type": "coco"}},
    }


@pytest.mark.slow
@pytest.mark.parametrize("task", list(FLOORS))
def test_lsnet_learns_synthetic_shapes(task: str) -> None:
    iters, lr, metric, floor = FLOORS[task]
    result = fit_and_score(run_config(task), iters=iters, lr=lr, seed=0)
    print(task, result.summary())  # shown with -s
    assert result.losses[-1] < 0.5 * result.losses[0], result.losses[::10]
    assert result.metrics[metric] >= floor, result.summary()
