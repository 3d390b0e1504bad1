"""Anchor assigners: mutual guidance v1 / v2 and the max-IoU baseline, batched over the images of a batch.

Every assigner works on GT padded to (B, G): rows with ``gt_valid`` false are padding and never assigned;
rows flagged ``gt_crowd`` are crowd regions, which only turn negatives into ignored anchors. The per-GT
loops of the reference are replaced by whole-matrix operations on (B, G, A) tensors, with row-wise top-k of a
per-row k done as one ``topk`` of the largest k plus a rank mask (spec §10). Predictions are detached here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torchvision.ops import box_convert

from lsvr_core.api import Registry
from lsvr_mutualguide.config import IoUAssignerConfig, MutualGuideAssignerConfig

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


@dataclass
class Assignment:
    """Targets of every anchor of a batch.

    Attributes:
        cls_state: (B, A) int8 classification state: 1 positive, 0 negative, -1 ignored (dropped from the loss).
        cls_gt: (B, A) int64 index of the matched GT row (meaningful where positive).
        cls_quality: (B, A) float32 target score of positives at their class: 1 (hard labels) or the
            predicted-box IoU (v2 soft labels); 0 elsewhere.
        reg_pos: (B, A) bool regression positives.
        reg_gt: (B, A) int64 index of the GT row each regression positive regresses to.
        reg_weight: (B, A) float32 per-anchor regression weight (1, or the v2 quality); 0 off positives.
    """

    cls_state: Tensor
    cls_gt: Tensor
    cls_quality: Tensor
    reg_pos: Tensor
    reg_gt: Tensor
    reg_weight: Tensor


def batched_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair within each image.

    Args:
        boxes1: (B, G, 4) float xyxy pixels.
        boxes2: (B, A, 4) or (1, A, 4) float xyxy pixels.
    Returns:
        (B, G, A) float IoU in [0, 1] (0 when both boxes are empty).
    """
    b1 = [boxes1[..., i, None] for i in range(4)]  # 4 x (B, G, 1)
    b2 = [boxes2[..., i][:, None] for i in range(4)]  # 4 x (B or 1, 1, A)
    iw = torch.minimum(b1[2], b2[2]).sub_(torch.maximum(b1[0], b2[0])).clamp_(min=0)  # (B, G, A)
    ih = torch.minimum(b1[3], b2[3]).sub_(torch.maximum(b1[1], b2[1])).clamp_(min=0)
    inter = iw.mul_(ih)
    area1 = (b1[2] - b1[0]).clamp(min=0) * (b1[3] - b1[1]).clamp(min=0)  # (B, G, 1)
    area2 = (b2[2] - b2[0]).clamp(min=0) * (b2[3] - b2[1]).clamp(min=0)  # (B or 1, 1, A)
    union = (area1 + area2).sub_(inter).clamp_(min=1e-12)
    return inter.div_(union)


def crowd_ignore(anchors_xyxy: Tensor, gt_boxes: Tensor, gt_crowd: Tensor, min_ioa: float) -> Tensor:
    """(B, A) bool: anchors covered by a crowd box for at least ``min_ioa`` of their own area."""
    if not bool(gt_crowd.any()):
        return torch.zeros(gt_boxes.shape[0], anchors_xyxy.shape[0], dtype=torch.bool, device=gt_boxes.device)
    a = anchors_xyxy[None]
    lt = torch.maximum(gt_boxes[:, :, None, :2], a[:, None, :, :2])
    rb = torch.minimum(gt_boxes[:, :, None, 2:], a[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)  # (B, G, A)
    area = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])).clamp(min=1e-12)  # (1, A)
    return ((inter / area[:, None]) >= min_ioa).logical_and(gt_crowd[..., None]).any(1)


def force_best(m: Tensor, rows: Tensor) -> Tensor:
    """Set each row's maximum to 1 (every object keeps a "best" anchor; §3 step 5a), in place.

    Args:
        m: (B, G, A) float quality matrix (overwritten and returned).
        rows: (B, G) bool rows to process (the objects).
    """
    best = m.argmax(-1, keepdim=True)  # (B, G, 1); first index on ties, as torch.max in the reference
    value = torch.where(rows[..., None], torch.ones_like(best, dtype=m.dtype), m.gather(-1, best))
    return m.scatter_(-1, best, value)


def keep_column_max(m: Tensor, rows: Tensor) -> Tensor:
    """Zero every entry that is not its anchor column's maximum over the objects (ties keep all; §3 step 5b),
    in place.

    Rows outside ``rows`` (padding, crowd) are excluded from the maximum and come back as zeros. Entries are
    assumed >= 0.
    """
    m.masked_fill_(~rows[..., None], -1.0)
    col_max = m.amax(1, keepdim=True)  # (B, 1, A)
    return m.mul_(m == col_max).clamp_(min=0.0)  # an all-padding column is -1 everywhere -> 0


def rank_in_row(m: Tensor, k_max: int) -> tuple[Tensor, Tensor]:
    """Indices and ranks of each row's ``k_max`` largest entries: ((B, G, k_max) int64, (k_max,) int64)."""
    k_max = min(k_max, m.shape[-1])
    idx = m.topk(k_max, dim=-1).indices
    return idx, torch.arange(k_max, device=m.device)


def mark_top(m: Tensor, ks: list[Tensor], values: list[float]) -> Tensor:
    """Overwrite each row's top entries, ranked on the unmodified row (§3 step 6, §10).

    Args:
        m: (B, G, A) float.
        ks: per-row counts (B, G) int64 in decreasing order of the mark they get, e.g. [n_ign, n_pos].
        values: the mark of each count, e.g. [2, 3]: the top n_ign become 2, then the top n_pos become 3.
    Returns:
        ``m`` with the marks written in place.
    """
    k_max = int(torch.stack(ks).max()) if m.numel() else 0
    if k_max == 0:
        return m
    idx, rank = rank_in_row(m, k_max)
    top = m.gather(-1, idx)  # (B, G, k)
    for k, value in zip(ks, values, strict=True):
        top = torch.where(rank < k[..., None], torch.full_like(top, value), top)
    return m.scatter_(-1, idx, top)


def nonzero_count(m: Tensor) -> Tensor:
    """(B, G) int64 number of positive entries per row: the cap on k that avoids marking zero-quality anchors
    (the v1 reference's tie bug, §3 "Quirk"; fixed as in HEAD commit 5b75dc5)."""
    return (m > 0).sum(-1)


def _gt_probability(logits: Tensor, gt_labels: Tensor) -> Tensor:
    """(B, G, A) sigmoid probability of each object's class at every anchor; logits (B, A, C) detached."""
    labels = gt_labels.clamp(0, logits.shape[-1] - 1)
    index = labels[:, None, :].expand(-1, logits.shape[1], -1)  # (B, A, G)
    return logits.detach().gather(2, index).float().sigmoid_().transpose(1, 2)


def _finish(cls_marked: Tensor, reg_marked: Tensor, ignored: Tensor | None, soft: bool, crowd: Tensor) -> Assignment:
    """Per anchor (max, argmax) over the objects of the marked matrices (§3 steps 7-8, §7)."""
    v, cls_gt = cls_marked.max(1)  # (B, A)
    u, reg_gt = reg_marked.max(1)
    pos = v >= 3
    state = torch.full_like(cls_gt, NEGATIVE, dtype=torch.int8)
    state[pos] = POSITIVE
    if ignored is not None:
        state[ignored & ~pos] = IGNORED
    state[crowd & (state == NEGATIVE)] = IGNORED
    quality = torch.where(pos, (v - 3) if soft else torch.ones_like(v), torch.zeros_like(v))
    reg_pos = u >= 3
    weight = torch.where(reg_pos, (u - 3) if soft else torch.ones_like(u), torch.zeros_like(u))
    return Assignment(state, cls_gt, quality, reg_pos, reg_gt, weight)


def assign_in_chunks(assign: Callable[..., Assignment], cpu_chunk: int, anchors: Tensor, pred_boxes: Tensor,
                     pred_logits: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor,
                     gt_crowd: Tensor) -> Assignment:
    """Call ``assign`` on the whole batch (GPU, or B <= ``cpu_chunk``) or on chunks of ``cpu_chunk`` images.

    On the CPU the (B, G, A) intermediates of one call outgrow the caches: chunks of one image were 2.1x faster
    than one call at batch 32, 320 px (``benchmarks/assigner_cpu.txt``). Each chunk drops its trailing padding
    GT columns (GT row indices are unchanged); the concatenated result equals one call's.
    """
    batch = pred_boxes.shape[0]
    if pred_boxes.device.type != "cpu" or batch <= cpu_chunk:
        return assign(anchors, pred_boxes, pred_logits, gt_boxes, gt_labels, gt_valid, gt_crowd)
    # columns in use per image (last valid GT + 1, at least 1), read back once for the whole batch
    position = torch.arange(1, gt_valid.shape[1] + 1, device=gt_valid.device)
    used = (gt_valid * position).amax(1).clamp(min=1).tolist() if gt_valid.shape[1] else [1] * batch
    parts = []
    for i in range(0, batch, cpu_chunk):
        rows = slice(i, i + cpu_chunk)
        g = max(used[rows])
        parts.append(assign(anchors, pred_boxes[rows], pred_logits[rows], gt_boxes[rows, :g], gt_labels[rows, :g],
                            gt_valid[rows, :g], gt_crowd[rows, :g]))
    return Assignment(*(torch.cat([getattr(a, f.name) for a in parts]) for f in fields(Assignment)))


class MutualGuideAssigner:
    """Mutual guidance (``mutual_guide``): v1 (§3, default) or v2 (§7).

    Call with ``anchors`` (A, 4) (cx, cy, w, h) pixels, ``pred_boxes`` (B, A, 4) decoded xyxy pixels,
    ``pred_logits`` (B, A, C), ``gt_boxes`` (B, G, 4) xyxy pixels, ``gt_labels`` (B, G) int64 in [0, C),
    ``gt_valid`` (B, G) bool and ``gt_crowd`` (B, G) bool; returns an :class:`Assignment`.

    On the CPU the batch is assigned ``cpu_chunk`` images at a time (:func:`assign_in_chunks`); on a GPU the
    whole batch is one call. Results are identical.
    """

    def __init__(self, variant: str = "v1", pos_iou: float = 0.5, ignore_iou: float = 0.4, sigma: float = 2.0,
                 topk: int = 15, crowd_ioa: float = 0.5, cpu_chunk: int = 1) -> None:
        self.variant, self.pos_iou, self.ignore_iou = variant, pos_iou, ignore_iou
        self.sigma, self.topk, self.crowd_ioa = sigma, topk, crowd_ioa
        self.cpu_chunk = cpu_chunk

    @classmethod
    def from_config(cls, cfg: MutualGuideAssignerConfig) -> MutualGuideAssigner:
        return cls(cfg.variant, cfg.pos_iou, cfg.ignore_iou, cfg.sigma, cfg.topk, cfg.crowd_ioa)

    @torch.no_grad()
    def __call__(self, anchors: Tensor, pred_boxes: Tensor, pred_logits: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                 gt_valid: Tensor, gt_crowd: Tensor) -> Assignment:
        return assign_in_chunks(self._assign, self.cpu_chunk, anchors, pred_boxes, pred_logits, gt_boxes, gt_labels,
                                gt_valid, gt_crowd)

    def _assign(self, anchors: Tensor, pred_boxes: Tensor, pred_logits: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                gt_valid: Tensor, gt_crowd: Tensor) -> Assignment:
        anchors_xyxy = box_convert(anchors, "cxcywh", "xyxy")
        objects = gt_valid & ~gt_crowd  # (B, G)
        iou_anc = batched_iou(gt_boxes, anchors_xyxy[None])  # (B, G, A)
        iou_reg = batched_iou(gt_boxes, pred_boxes.detach().float())
        p = _gt_probability(pred_logits, gt_labels)
        crowd = crowd_ignore(anchors_xyxy, gt_boxes, gt_valid & gt_crowd, self.crowd_ioa)
        if self.variant == "v1":
            return self._v1(iou_anc, iou_reg, p, objects, crowd)
        return self._v2(iou_anc, iou_reg, p, objects, crowd)

    def _v1(self, iou_anc: Tensor, iou_reg: Tensor, p: Tensor, objects: Tensor, crowd: Tensor) -> Assignment:
        q_amp = iou_anc.pow((self.sigma - p) / self.sigma)  # §3 step 4, from the raw anchor IoU (before 5)
        iou_anc, iou_reg, q_amp = (keep_column_max(force_best(m, objects), objects) for m in (iou_anc, iou_reg, q_amp))
        n_pos = (iou_anc >= self.pos_iou).sum(-1)  # (B, G): what IoU matching gives each object
        n_ign = (iou_anc >= self.ignore_iou).sum(-1)
        nnz_reg = nonzero_count(iou_reg)
        cls_marked = mark_top(iou_reg, [n_ign.minimum(nnz_reg), n_pos.minimum(nnz_reg)], [2.0, 3.0])
        reg_marked = mark_top(q_amp, [n_pos.minimum(nonzero_count(q_amp))], [3.0])
        return _finish(cls_marked, reg_marked, cls_marked.amax(1) >= 2, soft=False, crowd=crowd)

    def _dynamic_k(self, m: Tensor) -> Tensor:
        """(B, G) k = max(1, floor(sum of the row's top-``topk`` values)), capped at the non-zero count (§7)."""
        top = m.topk(min(self.topk, m.shape[-1]), dim=-1).values
        return top.sum(-1).floor().long().clamp(min=1).minimum(nonzero_count(m))

    def _v2(self, iou_anc: Tensor, iou_reg: Tensor, p: Tensor, objects: Tensor, crowd: Tensor) -> Assignment:
        q_cls = keep_column_max(iou_reg, objects)
        q_reg = keep_column_max((iou_anc * torch.exp(p / self.sigma)).clamp(max=1.0), objects)
        cls_marked = _add_top(q_cls, self._dynamic_k(q_cls))
        reg_marked = _add_top(q_reg, self._dynamic_k(q_reg))
        return _finish(cls_marked, reg_marked, None, soft=True, crowd=crowd)


def _add_top(m: Tensor, k: Tensor) -> Tensor:
    """Add 3 to each row's ``k`` largest entries, in place (v2 marking keeps the quality: value - 3 is the IoU;
    §7)."""
    k_max = int(k.max()) if k.numel() else 0
    if k_max == 0:
        return m
    idx, rank = rank_in_row(m, k_max)
    bonus = torch.where(rank < k[..., None], 3.0, 0.0).to(m.dtype)  # (B, G, k)
    return m.scatter_add_(-1, idx, bonus)


class IoUAssigner:
    """Baseline max-IoU matching (``iou``, §3 "Baseline"): every object's best anchor is forced to it, then
    positive if IoU >= 0.5, ignored if in [0.4, 0.5), negative below; both tasks share the positives.

    Same call signature as :class:`MutualGuideAssigner` (the predictions are not used).
    """

    def __init__(self, pos_iou: float = 0.5, ignore_iou: float = 0.4, crowd_ioa: float = 0.5,
                 cpu_chunk: int = 1) -> None:
        self.pos_iou, self.ignore_iou, self.crowd_ioa = pos_iou, ignore_iou, crowd_ioa
        self.cpu_chunk = cpu_chunk

    @classmethod
    def from_config(cls, cfg: IoUAssignerConfig) -> IoUAssigner:
        return cls(cfg.pos_iou, cfg.ignore_iou, cfg.crowd_ioa)

    @torch.no_grad()
    def __call__(self, anchors: Tensor, pred_boxes: Tensor, pred_logits: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                 gt_valid: Tensor, gt_crowd: Tensor) -> Assignment:
        return assign_in_chunks(self._assign, self.cpu_chunk, anchors, pred_boxes, pred_logits, gt_boxes, gt_labels,
                                gt_valid, gt_crowd)

    def _assign(self, anchors: Tensor, pred_boxes: Tensor, pred_logits: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                gt_valid: Tensor, gt_crowd: Tensor) -> Assignment:
        anchors_xyxy = box_convert(anchors, "cxcywh", "xyxy")
        objects = gt_valid & ~gt_crowd
        iou = keep_column_max(force_best(batched_iou(gt_boxes, anchors_xyxy[None]), objects), objects)
        crowd = crowd_ignore(anchors_xyxy, gt_boxes, gt_valid & gt_crowd, self.crowd_ioa)
        v = iou.amax(1)  # (B, A)
        # marks: positives -> 3 so that _finish reads them like the MG matrices
        marked = torch.where(iou >= self.pos_iou, torch.full_like(iou, 3.0), iou)
        return _finish(marked, marked, (v >= self.ignore_iou), soft=False, crowd=crowd)


def build_mutual_guide(cfg: MutualGuideAssignerConfig, *, registry: Registry | None = None) -> MutualGuideAssigner:
    """Factory of the ``mutual_guide`` assigner."""
    return MutualGuideAssigner.from_config(cfg)


def build_iou(cfg: IoUAssignerConfig, *, registry: Registry | None = None) -> IoUAssigner:
    """Factory of the ``iou`` assigner."""
    return IoUAssigner.from_config(cfg)
