"""HTC export (``lsvr export --postprocess``): the traceable one-image cascade of :mod:`lsvr_core.export.htc`
gives eager ``HTCHead.predict``'s detections and masks (oracle: the eager cascade with torchvision's RPN and
``batched_nms``) on a randomly initialised head, bbox and segm, with and without the semantic branch; the
``torch.export`` program gives them too; raw exports are refused with a ``--postprocess`` hint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lsvr_core.builtin.htc_config import HTCHeadConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.models.htc.head import build_htc_head

sys.path.insert(0, str(Path(__file__).parent))
from two_stage_export import (  # noqa: E402
    check_pt2_program,
    check_raw_export_refused,
    check_traceable_equals_predict,
    one_image_case,
)

torch.set_num_threads(1)
SHAPE = {f"p{i}": ShapeSpec(32, 2**i) for i in range(2, 6)}  # P6 max-pooled in the head (the default)
SMALL = dict(representation_size=32, mask_head_channels=8, semantic_classes=5, semantic_convs=1,
             rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=200)
H, W = 96, 128  # padded input


def _head(task: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_htc_head(HTCHeadConfig(**{**SMALL, **kw}), SHAPE, 3, task).eval()



@pytest.mark.parametrize(("task", "kw", "image_size"), [
    ("segm", {}, (80, 110)),  # semantic branch; masks pasted in the input frame; clipped inside the padding
    ("segm", {"with_semantic": False, "mask_paste_frame": "original"}, (96, 128)),
    ("bbox", {}, (96, 128)),
    ("bbox", {"with_semantic": False, "box_score_thresh": 0.251}, (70, 128)),  # the threshold cuts
    ("segm", {"box_score_thresh": 0.9}, (96, 128)),  # nothing above the threshold: empty outputs
    # 648 proposals x 3 classes > 1000 candidates: eager batched_nms loops over classes, the graph offsets them
    ("bbox", {"with_semantic": False, "rpn_pre_nms_top_n_test": 1000, "rpn_post_nms_top_n_test": 1000,
              "box_score_thresh": 0.0}, (96, 128)),
], ids=["segm-semantic", "segm-original-frame", "bbox-semantic", "bbox", "empty", "bbox-over-1000-candidates"])
def test_traceable_cascade_equals_predict(task: str, kw: dict, image_size: tuple[int, int]) -> None:
    head = _head(task, **kw)
    feats, batch = one_image_case(SHAPE, (H, W), image_size)
    check_traceable_equals_predict(head, feats, batch, (H, W), kw.get("box_score_thresh") == 0.9,
                                   box_atol=1e-3, mask_atol=1e-3)


@pytest.mark.slow
def test_pt2_program_equals_predict_with_semantic_branch_and_masks() -> None:
    """One program of the segm head with the semantic branch, run at the full size and at 1 x 1 px."""
    check_pt2_program(_head("segm"), SHAPE, (H, W), box_atol=1e-3, mask_atol=1e-3)


def test_raw_export_is_refused_with_a_postprocess_hint() -> None:
    check_raw_export_refused(_head("bbox"))
