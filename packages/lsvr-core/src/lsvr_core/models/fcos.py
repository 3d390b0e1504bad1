"""FCOS head (Tian et al. 2019) over torchvision's ``FCOSHead``, its matching, loss and post-processing.

The reference one-stage baseline that other heads are compared with. What lsvr adds around torchvision:
feature levels and strides come from the neck's ``output_shape()`` (torchvision infers strides by integer
division of the padded size, which is wrong for P6/P7 on sizes that are not multiples of 128), anchor points
sit at cell centres ``(floor(s / 2) + x s, floor(s / 2) + y s)`` as in the FCOS paper §3.1 (torchvision uses
the cell corner), and crowd boxes are removed before matching, so they are never positives.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS
from torchvision.models.detection._utils import BoxLinearCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead as TorchvisionFCOSHead

from lsvr_core.builtin.configs import FCOSHeadConfig
from lsvr_core.contracts import Registry, ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.structures import Batch, Predictions, Targets

TASKS = ("bbox",)


class FCOSHead(nn.Module):
    """FCOS classification, box regression and centre-ness branches shared over the levels ``in_levels``.

    ``forward(features, batch) -> {"loss_cls", "loss_box", "loss_ctr"}``: scalar float32 losses (sigmoid
    focal, GIoU and centre-ness BCE), each divided by the number of positive points in the batch.
    ``predict(features, batch) -> list[Predictions]``: per image, boxes xyxy pixels in the input frame
    (clipped to the image size before padding), scores ``sqrt(sigmoid(cls) * sigmoid(ctr))``, labels in
    [0, num_classes), after per-class NMS.

    Args:
        input_shape: the neck's ``output_shape()``; every level in ``in_levels`` must have the same channels,
            divisible by 32 (the branches use GroupNorm(32)).
        in_levels: levels to predict on, fine to coarse; the regression ranges are torchvision's
            ``[4 s, 8 s]`` per level (open on the first and last level), i.e. FCOS's 64/128/256/512 pixels for
            strides 8..128.
        num_classes: foreground classes.
        num_convs: conv-GN-ReLU layers in each branch.
        center_sampling_radius: positives lie within this many strides of a box centre (and inside the box).
        score_thresh, nms_thresh, topk_candidates, detections_per_img: post-processing, as in torchvision.
    Raises:
        ConfigError: a level missing from ``input_shape``, unequal channels, or channels not divisible by 32.
    """

    # torchvision's matching + loss and post-processing, used unchanged; they read only ``self.head``,
    # ``self.box_coder``, ``self.center_sampling_radius`` and the post-processing thresholds set below.
    _match_and_loss = FCOS.compute_loss
    _postprocess = FCOS.postprocess_detections

    def __init__(self, input_shape: dict[str, ShapeSpec], in_levels: tuple[str, ...], num_classes: int,
                 num_convs: int = 4, center_sampling_radius: float = 1.5, score_thresh: float = 0.05,
                 nms_thresh: float = 0.6, topk_candidates: int = 1000, detections_per_img: int = 100) -> None:
        super().__init__()
        missing = [lv for lv in in_levels if lv not in input_shape]
        if missing or not in_levels:
            raise ConfigError(f"model.head.in_levels {list(in_levels)}: {missing or 'empty'} not produced by the "
                              f"neck, which outputs {list(input_shape)}")
        channels = {input_shape[lv].channels for lv in in_levels}
        if len(channels) != 1:
            raise ConfigError(f"model.head (fcos): levels {list(in_levels)} have different channels {channels}")
        in_channels = channels.pop()
        if in_channels % 32:
            raise ConfigError(f"model.head (fcos): input channels {in_channels} must be divisible by 32 (GroupNorm)")
        self.in_levels = tuple(in_levels)
        self.strides = [input_shape[lv].stride for lv in in_levels]
        self.num_classes = num_classes
        self.head = TorchvisionFCOSHead(in_channels, 1, num_classes, num_convs)
        self.anchor_generator = AnchorGenerator(tuple((s,) for s in self.strides), ((1.0,),) * len(self.strides))
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.center_sampling_radius = center_sampling_radius
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.topk_candidates = topk_candidates
        self.detections_per_img = detections_per_img

    def anchors(self, features: list[Tensor]) -> tuple[Tensor, list[int]]:
        """Anchor boxes of size s x s centred on each point, (sum_l H_l W_l, 4) xyxy pixels, and the number
        of points per level. Points: ``(floor(s / 2) + x s, floor(s / 2) + y s)`` (FCOS §3.1)."""
        grid_sizes = [list(f.shape[-2:]) for f in features]
        device = features[0].device
        strides = [[torch.tensor(s, device=device), torch.tensor(s, device=device)] for s in self.strides]
        self.anchor_generator.set_cell_anchors(torch.float32, device)
        per_level = self.anchor_generator.grid_anchors(grid_sizes, strides)
        per_level = [a + (s // 2) for a, s in zip(per_level, self.strides, strict=True)]
        return torch.cat(per_level), [h * w for h, w in grid_sizes]

    def _outputs(self, features: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor, list[int]]:
        feats = [features[lv] for lv in self.in_levels]
        outputs = {k: v.float() for k, v in self.head(feats).items()}  # cls (B, P, C), box (B, P, 4), ctr (B, P, 1)
        anchors, counts = self.anchors(feats)
        return outputs, anchors, counts

    def forward(self, features: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        outputs, anchors, counts = self._outputs(features)
        targets = [_loss_targets(t) for t in batch.targets]
        losses = self._match_and_loss(targets, outputs, [anchors] * len(targets), counts)
        return {"loss_cls": losses["classification"], "loss_box": losses["bbox_regression"],
                "loss_ctr": losses["bbox_ctrness"]}

    @torch.no_grad()
    def predict(self, features: dict[str, Tensor], batch: Batch) -> list[Predictions]:
        outputs, anchors, counts = self._outputs(features)
        split = {k: list(v.split(counts, dim=1)) for k, v in outputs.items()}
        anchors_per_level = list(anchors.split(counts))
        sizes = [tuple(t.image_size) for t in batch.targets]
        detections = self._postprocess(split, [anchors_per_level] * len(sizes), sizes)
        return [Predictions(d["boxes"], d["scores"], d["labels"], image_id=t.image_id)
                for d, t in zip(detections, batch.targets, strict=True)]


    # --- export (lsvr export): raw outputs in the graph, decoding in Python ---------------------------------

    def export_outputs(self, features: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """Per level, 4-D outputs of torchvision's FCOS sub-heads: ``cls`` (B, C, h, w) for every level, then
        ``box`` (B, 4, h, w), then ``ctr`` (B, 1, h, w); :meth:`decode_outputs` flattens them as
        ``FCOSHead.forward`` does and decodes."""
        feats = [features[lv] for lv in self.in_levels]
        cls_head, reg_head = self.head.classification_head, self.head.regression_head
        cls = tuple(cls_head.cls_logits(cls_head.conv(x)) for x in feats)
        reg_feats = [reg_head.conv(x) for x in feats]
        box = tuple(nn.functional.relu(reg_head.bbox_reg(r)) for r in reg_feats)
        ctr = tuple(reg_head.bbox_ctrness(r) for r in reg_feats)
        return cls + box + ctr

    @torch.no_grad()
    def decode_outputs(self, outputs: tuple[Tensor, ...], batch: Batch) -> list[Predictions]:
        """Input-frame predictions from :meth:`export_outputs` (torchvision's FCOS postprocess, as :meth:`predict`).

        Raises:
            ValueError: not ``3 x levels`` tensors.
        """
        n = len(self.in_levels)
        if len(outputs) != 3 * n:
            raise ValueError(f"fcos head: expected {3 * n} raw outputs, got {len(outputs)}")

        def flat(ts: tuple[Tensor, ...]) -> Tensor:  # (B, K, h, w) per level -> (B, sum h w, K)
            return torch.cat([t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, t.shape[1]) for t in ts], 1).float()

        cls, box, ctr = flat(outputs[:n]), flat(outputs[n : 2 * n]), flat(outputs[2 * n :])
        anchors, counts = self.anchors(list(outputs[:n]))
        split = {k: list(v.split(counts, dim=1)) for k, v in
                 {"cls_logits": cls, "bbox_regression": box, "bbox_ctrness": ctr}.items()}
        sizes = [tuple(t.image_size) for t in batch.targets]
        detections = self._postprocess(split, [list(anchors.split(counts))] * len(sizes), sizes)
        return [Predictions(d["boxes"], d["scores"], d["labels"], image_id=t.image_id)
                for d, t in zip(detections, batch.targets, strict=True)]

    def export_postprocess(self, outputs: tuple[Tensor, ...], image_size: Tensor,
                           scale_factor: Tensor, input_size: tuple[int, int]) -> dict[str, Tensor]:
        """Traceable decoding of one image's :meth:`export_outputs` (``lsvr export --postprocess``).

        torchvision's post-processing with fixed shapes: per level the ``topk_candidates`` best (point, class)
        pairs whatever their score, boxes decoded and clipped to ``image_size`` ((2,) int64 [h, w]), class-wise
        NMS over all levels' pairs, then score > ``score_thresh`` and the first ``detections_per_img``. Greedy
        NMS never lets a lower score suppress a higher one, so this keeps what :meth:`decode_outputs` keeps.
        ``scale_factor`` and ``input_size`` are unused. Returns ``boxes`` (K, 4) float32 xyxy pixels, ``scores`` (K,),
        ``labels`` (K,) int64.
        """
        from lsvr_core.export.postprocess import nms_keep, topk_pairs

        n = len(self.in_levels)
        anchors, counts = self.anchors(list(outputs[:n]))
        limit = image_size.flip(0).to(torch.float32).repeat(2)  # [w, h, w, h]
        all_boxes, all_scores, all_labels = [], [], []
        for lv, anchors_l in enumerate(anchors.split(counts)):
            cls, box, ctr = (t[0].flatten(1).t().float() for t in (outputs[lv], outputs[n + lv], outputs[2 * n + lv]))
            scores = torch.sqrt(torch.sigmoid(cls) * torch.sigmoid(ctr))  # (h w, C)
            top, loc, labels = topk_pairs(scores, self.topk_candidates)
            boxes = self.box_coder.decode(box[loc], anchors_l[loc])
            all_boxes.append(torch.minimum(boxes.clamp(min=0), limit))
            all_scores.append(top)
            all_labels.append(labels)
        boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
        keep = nms_keep(boxes, scores, labels, iou_thr=self.nms_thresh, score_thr=self.score_thresh,
                        max_dets=self.detections_per_img)
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def _loss_targets(t: Targets) -> dict[str, Tensor]:
    """torchvision-style target dict without crowd and degenerate boxes (those are never positives)."""
    boxes = t.boxes.float()
    keep = ~t.iscrowd.to(boxes.device) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return {"boxes": boxes[keep], "labels": t.labels[keep]}


def build_fcos_head(cfg: FCOSHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int,
                    task: str, *, registry: Registry | None = None) -> FCOSHead:
    """Build the ``fcos`` head (factory of the built-in plugin).

    Raises:
        ConfigError: ``task`` is not ``bbox``, or see :class:`FCOSHead`.
    """
    if task not in TASKS:
        raise ConfigError(f"head 'fcos' does not support task {task!r}; supported: {', '.join(TASKS)}")
    return FCOSHead(input_shape, cfg.in_levels, num_classes, cfg.num_convs, cfg.center_sampling_radius,
                    cfg.score_thresh, cfg.nms_thresh, cfg.topk_candidates, cfg.detections_per_img)
