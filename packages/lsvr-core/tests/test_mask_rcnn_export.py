"""Mask R-CNN export (``lsvr export --postprocess``): the traceable one-image decoding of
:mod:`lsvr_core.export.rcnn` gives exactly eager ``predict``'s detections (oracle: torchvision's RPN and
RoIHeads inference as run by ``MaskRCNNHead.predict``) on a randomly initialised head; the ``torch.export``
program gives them too, including when NMS keeps a single box; raw exports are refused with a hint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lsvr_core.builtin.mask_rcnn_config import MaskRCNNHeadConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.models.mask_rcnn import build_mask_rcnn_head

sys.path.insert(0, str(Path(__file__).parent))
from two_stage_export import (  # noqa: E402
    check_pt2_program,
    check_raw_export_refused,
    check_traceable_equals_predict,
    one_image_case,
)

torch.set_num_threads(1)
SHAPE = {f"p{i}": ShapeSpec(32, 2**i) for i in range(2, 7)}
SMALL = dict(representation_size=64, mask_head_channels=16)
H, W = 128, 160  # padded input


def _head(task: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, **kw), SHAPE, 3, task).eval()



@pytest.mark.parametrize(("task", "kw", "image_size"), [
    ("segm", {"box_score_thresh": 0.0}, (100, 150)),  # masks pasted in the input frame; clipped inside padding
    ("bbox", {}, (128, 160)),
    ("segm", {"box_score_thresh": 0.0, "roi_align_aligned": True, "maxpool_last_level": True,
              "mask_paste_frame": "original", "roi_sampling_ratio": 2}, (97, 160)),
    ("segm", {"box_score_thresh": 0.9}, (128, 160)),  # nothing above the threshold: empty outputs
], ids=["segm-input-frame", "bbox", "segm-mmdet-options", "empty"])
def test_traceable_decoding_equals_predict(task: str, kw: dict, image_size: tuple[int, int]) -> None:
    if kw.get("maxpool_last_level"):
        shape = {k: v for k, v in SHAPE.items() if k != "p6"}
        torch.manual_seed(0)
        head = build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, **kw), shape, 3, task).eval()
    else:
        head = _head(task, **kw)
    feats, batch = one_image_case(SHAPE, (H, W), image_size)
    if kw.get("maxpool_last_level"):
        feats.pop("p6")
    check_traceable_equals_predict(head, feats, batch, (H, W), kw.get("box_score_thresh") == 0.9,
                                   box_atol=1e-4, mask_atol=1e-5)


@pytest.mark.slow
def test_pt2_program_equals_predict_also_when_nms_keeps_one_box() -> None:
    """One program run at the full size and at 1 x 1 px, where each per-level NMS keeps exactly one box."""
    check_pt2_program(_head("segm", box_score_thresh=0.0), SHAPE, (H, W), box_atol=1e-4, mask_atol=1e-5)


def test_raw_export_is_refused_with_a_postprocess_hint() -> None:
    check_raw_export_refused(_head("bbox"))
