"""Per-image, per-object loop form of the v1 mutual-guidance rule, written directly from spec §3.

This is the test oracle of the batched :class:`~lsvr_mutualguide.assigners.MutualGuideAssigner` and the
baseline of ``tools/bench_assigner.py``; the training path never calls it. It uses torchvision's ``box_iou``
and processes one image and one object at a time, as the reference does. The only departure from the
reference is the fix of its zero-tie bug: k is capped at the row's non-zero count (§3 "Quirk").
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou


@torch.no_grad()
def assign_v1_image(anchors: Tensor, pred_boxes: Tensor, pred_logits: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                    pos_iou: float = 0.5, ignore_iou: float = 0.4, sigma: float = 2.0
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """v1 assignment of one image.

    Args:
        anchors: (A, 4) (cx, cy, w, h) pixels.
        pred_boxes: (A, 4) decoded xyxy pixels.
        pred_logits: (A, C) class logits.
        gt_boxes: (G, 4) xyxy pixels, G >= 1, no crowd boxes.
        gt_labels: (G,) int64 in [0, C).
    Returns:
        cls_state (A,) int8 (1 positive, 0 negative, -1 ignored), cls_gt (A,) int64, reg_pos (A,) bool,
        reg_gt (A,) int64.
    """
    iou_anc = box_iou(gt_boxes, box_convert(anchors, "cxcywh", "xyxy"))  # (G, A), step 1
    iou_reg = box_iou(gt_boxes, pred_boxes)  # step 2
    p = pred_logits.sigmoid()[:, gt_labels].t()  # (G, A), step 3
    q_amp = iou_anc ** ((sigma - p) / sigma)  # step 4
    mats = []
    for m in (iou_anc, iou_reg, q_amp):  # step 5
        m = m.clone()
        for g in range(m.shape[0]):
            m[g, m[g].argmax()] = 1.0
        col_max = m.max(0).values
        m[m != col_max[None]] = 0.0
        mats.append(m)
    iou_anc, iou_reg, q_amp = mats
    for g in range(iou_anc.shape[0]):  # step 6, one object at a time
        n_pos = int((iou_anc[g] >= pos_iou).sum())
        n_ign = int((iou_anc[g] >= ignore_iou).sum())
        row = iou_reg[g].clone()
        nnz = int((row > 0).sum())
        ign_idx = row.topk(min(n_ign, nnz)).indices
        pos_idx = row.topk(min(n_pos, nnz)).indices
        iou_reg[g, ign_idx] = 2.0
        iou_reg[g, pos_idx] = 3.0
        row = q_amp[g].clone()
        q_amp[g, row.topk(min(n_pos, int((row > 0).sum()))).indices] = 3.0
    v, cls_gt = iou_reg.max(0)  # step 7
    cls_state = torch.zeros_like(cls_gt, dtype=torch.int8)
    cls_state[v >= 2] = -1
    cls_state[v >= 3] = 1
    u, reg_gt = q_amp.max(0)  # step 8
    return cls_state, cls_gt, u >= 3, reg_gt
