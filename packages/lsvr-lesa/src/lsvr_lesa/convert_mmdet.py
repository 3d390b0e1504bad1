"""Key mapping of mmdet 2.11 detector parts (FPN, RPN head, Mask R-CNN and HTC RoI heads) to lsvr's built-in
``fpn`` neck and ``mask_rcnn`` / ``htc`` heads. Names and shapes are the reference's
(``LESA_detection``: ``mmdet/models/necks/fpn.py``, ``dense_heads/rpn_head.py``,
``roi_heads/bbox_heads/convfc_bbox_head.py``, ``mask_heads/fcn_mask_head.py``, ``htc_mask_head.py``,
``fused_semantic_head.py``).

Class layouts: mmdet 2.x puts the background logit *last* (``fc_cls``: K + 1 rows, K = background); lsvr's
RoI classifiers put it first (torchvision). Class-specific mmdet regressors and mask logits have K entries
(no background); torchvision's have K + 1 with background first, which gets zeros (never used). The FPN's P6
is a max-pool in mmdet (no parameters): load these weights into a head with ``maxpool_last_level: true`` and
a neck with ``num_extra: 0``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import Tensor

Rule = tuple[re.Pattern[str], Callable[[re.Match[str], Tensor], list[tuple[str, Tensor]]]]


def _rename(template: str) -> Callable[[re.Match[str], Tensor], list[tuple[str, Tensor]]]:
    return lambda m, t: [(m.expand(template), t)]


def bg_last_to_first(t: Tensor) -> Tensor:
    """(K + 1, ...) classifier rows with background last -> background first."""
    return torch.cat([t[-1:], t[:-1]])


def prepend_background(t: Tensor, rows: int) -> Tensor:
    """(K rows, ...) -> (K + 1 rows, ...) with ``rows`` zero rows for background in front."""
    return torch.cat([t.new_zeros((rows, *t.shape[1:])), t])


def _reg_specific(m: re.Match[str], t: Tensor) -> list[tuple[str, Tensor]]:
    return [(m.expand(r"head.roi_heads.box_predictor.bbox_pred.\1"), prepend_background(t, 4))]


def _mask_logits(prefix: str) -> Callable[[re.Match[str], Tensor], list[tuple[str, Tensor]]]:
    return lambda m, t: [(m.expand(prefix), prepend_background(t, 1))]


def _cls(template: str) -> Callable[[re.Match[str], Tensor], list[tuple[str, Tensor]]]:
    return lambda m, t: [(m.expand(template), bg_last_to_first(t))]


_P = r"(weight|bias)"
NECK_RPN: list[Rule] = [
    (re.compile(rf"^neck\.lateral_convs\.(\d+)\.conv\.{_P}$"), _rename(r"neck.fpn.inner_blocks.\1.0.\2")),
    (re.compile(rf"^neck\.fpn_convs\.(\d+)\.conv\.{_P}$"), _rename(r"neck.fpn.layer_blocks.\1.0.\2")),
    (re.compile(rf"^rpn_head\.rpn_conv\.{_P}$"), _rename(r"head.rpn.head.conv.0.0.\1")),
    (re.compile(rf"^rpn_head\.rpn_cls\.{_P}$"), _rename(r"head.rpn.head.cls_logits.\1")),
    (re.compile(rf"^rpn_head\.rpn_reg\.{_P}$"), _rename(r"head.rpn.head.bbox_pred.\1")),
]

MASK_RCNN: list[Rule] = [
    *NECK_RPN,
    (re.compile(rf"^roi_head\.bbox_head\.shared_fcs\.0\.{_P}$"), _rename(r"head.roi_heads.box_head.fc6.\1")),
    (re.compile(rf"^roi_head\.bbox_head\.shared_fcs\.1\.{_P}$"), _rename(r"head.roi_heads.box_head.fc7.\1")),
    (re.compile(rf"^roi_head\.bbox_head\.fc_cls\.{_P}$"), _cls(r"head.roi_heads.box_predictor.cls_score.\1")),
    (re.compile(rf"^roi_head\.bbox_head\.fc_reg\.{_P}$"), _reg_specific),
    (re.compile(rf"^roi_head\.mask_head\.convs\.(\d+)\.conv\.{_P}$"), _rename(r"head.roi_heads.mask_head.\1.0.\2")),
    (re.compile(rf"^roi_head\.mask_head\.upsample\.{_P}$"), _rename(r"head.roi_heads.mask_predictor.conv5_mask.\1")),
    (re.compile(rf"^roi_head\.mask_head\.conv_logits\.{_P}$"),
     _mask_logits(r"head.roi_heads.mask_predictor.mask_fcn_logits.\1")),
]

HTC: list[Rule] = [
    *NECK_RPN,
    (re.compile(rf"^roi_head\.bbox_head\.(\d+)\.shared_fcs\.0\.{_P}$"), _rename(r"head.box_heads.\1.fc6.\2")),
    (re.compile(rf"^roi_head\.bbox_head\.(\d+)\.shared_fcs\.1\.{_P}$"), _rename(r"head.box_heads.\1.fc7.\2")),
    (re.compile(rf"^roi_head\.bbox_head\.(\d+)\.fc_cls\.{_P}$"), _cls(r"head.box_predictors.\1.cls_score.\2")),
    (re.compile(rf"^roi_head\.bbox_head\.(\d+)\.fc_reg\.{_P}$"), _rename(r"head.box_predictors.\1.bbox_pred.\2")),
    (re.compile(rf"^roi_head\.mask_head\.(\d+)\.convs\.(\d+)\.conv\.{_P}$"),
     _rename(r"head.mask_heads.\1.convs.\2.0.\3")),
    (re.compile(rf"^roi_head\.mask_head\.(\d+)\.conv_res\.conv\.{_P}$"), _rename(r"head.mask_heads.\1.conv_res.0.\2")),
    (re.compile(rf"^roi_head\.mask_head\.(\d+)\.upsample\.{_P}$"), _rename(r"head.mask_heads.\1.upsample.\2")),
    (re.compile(rf"^roi_head\.mask_head\.(\d+)\.conv_logits\.{_P}$"), _rename(r"head.mask_heads.\1.logits.\2")),
    (re.compile(rf"^roi_head\.semantic_head\.lateral_convs\.(\d+)\.conv\.{_P}$"),
     _rename(r"head.semantic_head.lateral_convs.\1.0.\2")),
    (re.compile(rf"^roi_head\.semantic_head\.convs\.(\d+)\.conv\.{_P}$"), _rename(r"head.semantic_head.convs.\1.0.\2")),
    (re.compile(rf"^roi_head\.semantic_head\.conv_embedding\.conv\.{_P}$"),
     _rename(r"head.semantic_head.conv_embedding.0.\1")),
    (re.compile(rf"^roi_head\.semantic_head\.conv_logits\.{_P}$"), _rename(r"head.semantic_head.conv_logits.\1")),
]


def apply_rules(state: dict[str, Tensor], rules: list[Rule]) -> tuple[dict[str, Tensor], list[str]]:
    """Map every key by the first matching rule. Returns (converted, unmapped keys)."""
    out: dict[str, Tensor] = {}
    unmapped = []
    for key, value in state.items():
        for pattern, fn in rules:
            match = pattern.match(key)
            if match:
                out.update(fn(match, value))
                break
        else:
            unmapped.append(key)
    return out, unmapped
