"""The MutualGuide anchor head (spec §2 "Head"), its training losses (§4, §7) and inference (§6).

Per level, not shared: one 3x3 conv for box offsets (6 * 4 channels) and one 3x3 conv for class logits
(6 * C channels), no conv tower. Outputs are flattened level by level in (H, W, anchor) order to
loc (B, A, 4) and conf (B, A, C), the order of :func:`~lsvr_mutualguide.anchors.generate_anchors`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, nms

from lsvr_core.api import Batch, ConfigError, Predictions, Registry, ShapeSpec, Targets
from lsvr_mutualguide.anchors import ANCHORS_PER_LOCATION, generate_anchors
from lsvr_mutualguide.assigners import IGNORED, POSITIVE, Assignment
from lsvr_mutualguide.box_coding import decode, encode
from lsvr_mutualguide.config import MutualGuideHeadConfig
from lsvr_mutualguide.mixup import MixUp, MixUpBatch
from lsvr_mutualguide.neck_v2 import ConvBNSiLU


def pad_targets(targets: list[Targets], device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Stack per-image GT into padded tensors.

    Returns:
        boxes (B, G, 4) float32 xyxy pixels, labels (B, G) int64, valid (B, G) bool, crowd (B, G) bool with
        G = max(1, most instances in an image); padding rows have valid false.
    """
    g = max([1] + [len(t) for t in targets])
    b = len(targets)
    boxes = torch.zeros(b, g, 4, device=device)
    labels = torch.zeros(b, g, dtype=torch.int64, device=device)
    valid = torch.zeros(b, g, dtype=torch.bool, device=device)
    crowd = torch.zeros(b, g, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = len(t)
        boxes[i, :n] = t.boxes.to(device).float()
        labels[i, :n] = t.labels.to(device)
        valid[i, :n] = True
        crowd[i, :n] = t.iscrowd.to(device)
    return boxes, labels, valid, crowd


def predictor(in_channels: int, out_channels: int, tower: bool) -> nn.Module:
    """v1: a 3x3 conv (§2 "Head"); v2 (``tower``): 3x3 conv-BN-SiLU then a 1x1 conv (``HEAD:models/detector.py``)."""
    if not tower:
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return nn.Sequential(ConvBNSiLU(in_channels, in_channels, 3), nn.Conv2d(in_channels, out_channels, 1))


def last_conv(module: nn.Module) -> nn.Conv2d:
    return module[-1] if isinstance(module, nn.Sequential) else module  # type: ignore[return-value]


class MutualGuideHead(nn.Module):
    """Anchor head with a pluggable assigner (``mutual_guide`` v1 / v2 or ``iou``) and losses.

    Args:
        input_shape: the neck's levels (channels, stride), fine to coarse.
        num_classes: C foreground classes (sigmoid classifier).
        assigner: callable returning an :class:`~lsvr_mutualguide.assigners.Assignment`.
        loss_cls: ``(logits (N, C), target (N, C), weight, avg_factor) -> scalar`` (v1: focal α 0.25, γ 1).
        loss_bbox: the same signature on encoded offsets (N, 4) (Balanced L1).
        loss_iou: optional, on decoded xyxy boxes (N, 4) (v2: SIoU).
        anchor_base: level-0 anchor base size, pixels (24).
        variances: box-coding variances (0.1, 0.2).
        score_thresh, nms_thresh, detections_per_img: inference (§6: 0.005, class-wise NMS 0.5, 300).
        pre_nms_topk: per-class candidates kept before NMS (None keeps all above ``score_thresh``).
        mixup: optional :class:`~lsvr_mutualguide.mixup.MixUp` applied to training batches (§5).
        tower: v2 predictors (3x3 conv-BN-SiLU, then a 1x1 conv; §7) instead of v1's single 3x3 conv.
        nms: ``class_wise`` (§6) or ``agnostic`` (v2, §7; no ``detections_per_img`` cap, as the reference).
    """

    def __init__(self, input_shape: dict[str, ShapeSpec], num_classes: int, assigner: Any, loss_cls: nn.Module,
                 loss_bbox: nn.Module, loss_iou: nn.Module | None = None, anchor_base: float = 24.0,
                 variances: tuple[float, float] = (0.1, 0.2), prior_prob: float = 0.01, score_thresh: float = 0.005,
                 nms_thresh: float = 0.5, detections_per_img: int = 300, pre_nms_topk: int | None = None,
                 mixup: MixUp | None = None, tower: bool = False, nms: str = "class_wise") -> None:
        super().__init__()
        self.levels = sorted(input_shape, key=lambda lv: input_shape[lv].stride)
        self.num_classes = num_classes
        a = ANCHORS_PER_LOCATION
        self.loc = nn.ModuleList([predictor(input_shape[lv].channels, a * 4, tower) for lv in self.levels])
        self.conf = nn.ModuleList([predictor(input_shape[lv].channels, a * num_classes, tower) for lv in self.levels])
        for conv in [last_conv(m) for m in [*self.loc, *self.conf]]:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        for m in self.conf:
            nn.init.constant_(last_conv(m).bias, -math.log((1 - prior_prob) / prior_prob))
        self.nms = nms
        self.assigner, self.loss_cls, self.loss_bbox, self.loss_iou = assigner, loss_cls, loss_bbox, loss_iou
        self.anchor_base, self.variances = anchor_base, tuple(variances)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.pre_nms_topk = detections_per_img, pre_nms_topk
        self.mixup = mixup
        self._anchor_cache: dict[tuple[Any, ...], Tensor] = {}

    # --- shared -------------------------------------------------------------------------------------------

    def outputs(self, features: dict[str, Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """loc (B, A, 4) offsets, conf (B, A, C) logits and the (h, w) grid of each level."""
        locs, confs, grids = [], [], []
        for lv, loc_conv, conf_conv in zip(self.levels, self.loc, self.conf, strict=True):
            x = features[lv]
            b, _, h, w = x.shape
            locs.append(loc_conv(x).permute(0, 2, 3, 1).reshape(b, -1, 4))  # (B, h*w*6, 4)
            confs.append(conf_conv(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            grids.append((h, w))
        return torch.cat(locs, 1), torch.cat(confs, 1), grids

    def anchors(self, grids: list[tuple[int, int]], image_size: tuple[int, int], device: torch.device) -> Tensor:
        """(A, 4) (cx, cy, w, h) pixels for these grids and padded input size, cached."""
        key = (tuple(grids), tuple(image_size), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = generate_anchors(grids, image_size, self.anchor_base, device)
        return self._anchor_cache[key]

    # --- training -----------------------------------------------------------------------------------------

    def transform_train_batch(self, batch: Batch) -> Batch:
        """MixUp of the training batch when configured (called by the detector before the backbone)."""
        return self.mixup(batch) if self.mixup is not None else batch

    def forward(self, features: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """Losses ``loss_cls``, ``loss_bbox`` (and ``loss_iou``) as scalars (§4 normalisation). For a
        :class:`~lsvr_mutualguide.mixup.MixUpBatch` each term is lam * term(targets) + (1 - lam) *
        term(targets[index]) (``a192256:main.py:172-178``)."""
        loc, conf, grids = self.outputs(features)
        anchors = self.anchors(grids, tuple(batch.images.shape[-2:]), loc.device)
        if not isinstance(batch, MixUpBatch) or batch.index is None:
            return self.assign_and_losses(loc, conf, anchors, batch.targets)
        own = self.assign_and_losses(loc, conf, anchors, batch.targets)
        other = self.assign_and_losses(loc, conf, anchors, [batch.targets[i] for i in batch.index.tolist()])
        return {k: batch.lam * own[k] + (1 - batch.lam) * other[k] for k in own}

    def assign_and_losses(self, loc: Tensor, conf: Tensor, anchors: Tensor, targets: list[Targets]
                          ) -> dict[str, Tensor]:
        """Assign the anchors to ``targets`` (detached predictions) and compute the loss terms."""
        gt_boxes, gt_labels, gt_valid, gt_crowd = pad_targets(targets, loc.device)
        with torch.no_grad():
            pred_boxes = decode(loc.detach().float(), anchors, self.variances)
        assigned: Assignment = self.assigner(anchors, pred_boxes, conf.detach(), gt_boxes, gt_labels, gt_valid,
                                             gt_crowd)
        return self.losses(loc, conf, anchors, assigned, gt_boxes, gt_labels)

    def losses(self, loc: Tensor, conf: Tensor, anchors: Tensor, assigned: Assignment, gt_boxes: Tensor,
               gt_labels: Tensor) -> dict[str, Tensor]:
        """Classification over every class logit of the non-ignored anchors, summed and divided by the number
        of positives; regression on the regression positives, divided by 4 x the sum of their weights.
        Computed in float32 whatever the autocast precision."""
        loc, conf = loc.float(), conf.float()
        pos = assigned.cls_state == POSITIVE  # (B, A)
        labels = gt_labels.gather(1, assigned.cls_gt)  # (B, A)
        target = F.one_hot(labels, self.num_classes).to(conf.dtype) * (assigned.cls_quality * pos)[..., None]
        keep = assigned.cls_state != IGNORED
        num_pos = pos.sum().clamp(min=1).to(conf.dtype)
        out = {"loss_cls": self.loss_cls(conf[keep], target[keep], avg_factor=num_pos)}
        rp = assigned.reg_pos  # (B, A)
        idx = assigned.reg_gt[..., None].expand(-1, -1, 4)
        matched = gt_boxes.gather(1, idx)[rp]  # (P, 4) xyxy
        anchors_p = anchors[None].expand(rp.shape[0], -1, -1)[rp]  # (P, 4)
        weight = assigned.reg_weight[rp]  # (P,)
        norm = weight.sum()
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        offsets = loc[rp]
        out["loss_bbox"] = self.loss_bbox(offsets, encode(matched, anchors_p, self.variances), weight[:, None],
                                          avg_factor=4 * norm)
        if self.loss_iou is not None:
            out["loss_iou"] = self.loss_iou(decode(offsets, anchors_p, self.variances), matched, weight,
                                            avg_factor=norm)
        return out

    # --- inference ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, features: dict[str, Tensor], batch: Batch) -> list[Predictions]:
        """Decode, per class keep scores > ``score_thresh``, class-wise NMS, top ``detections_per_img``
        (§6); boxes are clamped to each image's unpadded size, input frame."""
        loc, conf, grids = self.outputs(features)
        anchors = self.anchors(grids, tuple(batch.images.shape[-2:]), loc.device)
        boxes = decode(loc.float(), anchors, self.variances)  # (B, A, 4)
        scores = conf.float().sigmoid()  # (B, A, C)
        return [self._predict_image(boxes[i], scores[i], t) for i, t in enumerate(batch.targets)]

    # --- export (lsvr export): raw outputs in the graph, decoding in Python ---------------------------------

    def export_outputs(self, features: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """Raw per-level conv outputs: ``loc`` (B, 4·A_l, h, w) for every level, then ``conf`` (B, C·A_l, h, w)
        (4-D, so the decoder knows each level's grid); :meth:`decode_outputs` inverts it."""
        locs = tuple(conv(features[lv]) for lv, conv in zip(self.levels, self.loc, strict=True))
        confs = tuple(conv(features[lv]) for lv, conv in zip(self.levels, self.conf, strict=True))
        return locs + confs

    @torch.no_grad()
    def decode_outputs(self, outputs: tuple[Tensor, ...], batch: Batch) -> list[Predictions]:
        """Input-frame predictions from :meth:`export_outputs` (the same decoding and NMS as :meth:`predict`).

        Raises:
            ValueError: not ``2 x levels`` tensors.
        """
        n = len(self.levels)
        if len(outputs) != 2 * n:
            raise ValueError(f"mutual_guide head: expected {2 * n} raw outputs, got {len(outputs)}")
        b = outputs[0].shape[0]
        loc = torch.cat([t.permute(0, 2, 3, 1).reshape(b, -1, 4) for t in outputs[:n]], 1)
        conf = torch.cat([t.permute(0, 2, 3, 1).reshape(b, -1, self.num_classes) for t in outputs[n:]], 1)
        grids = [(int(t.shape[-2]), int(t.shape[-1])) for t in outputs[:n]]
        anchors = self.anchors(grids, tuple(batch.images.shape[-2:]), loc.device)
        boxes = decode(loc.float(), anchors, self.variances)
        scores = conf.float().sigmoid()
        return [self._predict_image(boxes[i], scores[i], t) for i, t in enumerate(batch.targets)]

    def export_postprocess(self, outputs: tuple[Tensor, ...], image_size: Tensor, scale_factor: Tensor,
                           input_size: tuple[int, int]) -> dict[str, Tensor]:
        """Traceable decoding of one image's :meth:`export_outputs` (``lsvr export --postprocess``).

        :meth:`_predict_image` with fixed shapes (:func:`lsvr_mutualguide.export.decode_in_graph`): boxes
        clamped to ``image_size`` ((2,) int64 [h, w]), anchors for the padded ``input_size`` (H, W).
        ``scale_factor`` is unused. Returns ``boxes`` (K, 4) float32 xyxy pixels, ``scores`` (K,), ``labels``
        (K,) int64.
        """
        from lsvr_mutualguide.export import decode_in_graph

        n = len(self.levels)
        loc = torch.cat([t.permute(0, 2, 3, 1).reshape(1, -1, 4) for t in outputs[:n]], 1)[0]
        conf = torch.cat([t.permute(0, 2, 3, 1).reshape(1, -1, self.num_classes) for t in outputs[n:]], 1)[0]
        grids = [(int(t.shape[-2]), int(t.shape[-1])) for t in outputs[:n]]
        anchors = self.anchors(grids, input_size, loc.device)
        return decode_in_graph(self, decode(loc.float(), anchors, self.variances), conf.float().sigmoid(), image_size)

    def _predict_image(self, boxes: Tensor, scores: Tensor, meta: Targets) -> Predictions:
        h, w = meta.image_size
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                             boxes[:, 3].clamp(0, h)], -1)
        if self.nms == "agnostic":
            return self._predict_agnostic(boxes, scores, meta)
        if self.pre_nms_topk is not None and self.pre_nms_topk < scores.shape[0]:
            top, anchor_idx = scores.t().topk(self.pre_nms_topk, dim=1)  # (C, k)
            class_idx = torch.arange(self.num_classes, device=scores.device)[:, None].expand_as(anchor_idx)
            sel = top > self.score_thresh
            anchor_idx, class_idx, cand = anchor_idx[sel], class_idx[sel], top[sel]
        else:
            anchor_idx, class_idx = (scores > self.score_thresh).nonzero(as_tuple=True)
            cand = scores[anchor_idx, class_idx]
        cand_boxes = boxes[anchor_idx]
        keep = batched_nms(cand_boxes, cand, class_idx, self.nms_thresh)[: self.detections_per_img]
        return Predictions(cand_boxes[keep], cand[keep], class_idx[keep], image_id=meta.image_id)


    def _predict_agnostic(self, boxes: Tensor, scores: Tensor, meta: Targets) -> Predictions:
        """v2 (``HEAD:utils/box/detection.py``): anchors whose best class score > ``score_thresh``, NMS over all
        classes on that score, then one detection per (kept box, class with score > ``score_thresh``)."""
        best = scores.max(1).values  # (A,)
        cand = (best > self.score_thresh).nonzero(as_tuple=True)[0]
        keep = cand[nms(boxes[cand], best[cand], self.nms_thresh)]
        box_idx, class_idx = (scores[keep] > self.score_thresh).nonzero(as_tuple=True)
        anchor_idx = keep[box_idx]
        return Predictions(boxes[anchor_idx], scores[anchor_idx, class_idx], class_idx, image_id=meta.image_id)


def build_mutual_guide_head(cfg: MutualGuideHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int,
                            task: str, *, registry: Registry | None = None) -> MutualGuideHead:
    """Factory of the ``mutual_guide`` head; the assigner and losses are built through ``registry``.

    Raises:
        ConfigError: a task other than ``bbox``, or no ``registry``.
    """
    if task != "bbox":
        raise ConfigError(f"head 'mutual_guide' supports task 'bbox' only, got task {task!r}")
    if registry is None:
        raise ConfigError("model.head: the mutual_guide head builds its assigner and losses through registry= "
                          "(the plugin manager building it); none was given")
    loss_iou = registry.build("loss", cfg.loss_iou) if cfg.loss_iou is not None else None
    return MutualGuideHead(
        input_shape, num_classes, registry.build("assigner", cfg.assigner), registry.build("loss", cfg.loss_cls),
        registry.build("loss", cfg.loss_bbox), loss_iou, cfg.anchor_base, cfg.variances, cfg.prior_prob,
        cfg.score_thresh, cfg.nms_thresh, cfg.detections_per_img, cfg.pre_nms_topk,
        MixUp(cfg.mixup.alpha, cfg.mixup.until) if cfg.mixup is not None else None, cfg.tower, cfg.nms,
    )
