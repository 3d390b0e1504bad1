"""Hybrid Task Cascade head (Chen et al., CVPR 2019; mmdet 2.11 ``HybridTaskCascadeRoIHead``; LESA spec
§4.2) over torchvision's RPN, ``MultiScaleRoIAlign`` (aligned), ``BoxCoder`` and ``batched_nms``.

Training, per stage t (IoU threshold u_t, loss weight w_t): sample RoIs from the current proposals (plus the
ground truth), box loss (cross-entropy + smooth-L1 on class-agnostic deltas) weighted by w_t; regress the
sampled RoIs with stage t's deltas (ground-truth RoIs dropped): these are the next stage's proposals; with
``interleaved``, the mask branch of stage t trains on RoIs re-sampled from them (else on stage t's sample);
with ``mask_info_flow``, mask head t gets the features of heads 0..t-1 run on the same RoIs. The semantic
branch adds its pooled embedding to every box and mask RoI feature and a pixel-wise cross-entropy loss.

Inference: the three stages run in sequence (each regressing the previous stage's boxes with its argmax
class, class-agnostic here), the class scores are the softmax of the stage-averaged logits, boxes are the last
stage's; masks are the mean of the three mask heads' sigmoids (run with information flow) on the detections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import batched_nms, clip_boxes_to_image

from lsvr_core.builtin.htc_config import HTCHeadConfig
from lsvr_core.contracts import Registry, ShapeSpec
from lsvr_core.errors import ConfigError, DataError
from lsvr_core.models.htc.modules import CascadePredictor, FusedSemanticHead, HTCMaskHead
from lsvr_core.models.htc.sampling import StageSamples, sample_rois
from lsvr_core.models.mask_rcnn import StridedAnchorGenerator, head_features, head_input_shape
from lsvr_core.models.rcnn_parts import RPN, RoIAlignPyramid, box_loss, mask_targets, rcnn_targets
from lsvr_core.structures import Batch, Predictions, Targets

TASKS = ("bbox", "segm")


class HTCHead(nn.Module):
    """RPN + cascade box stages + interleaved mask branches + semantic branch over an FPN.

    ``forward(features, batch)`` (training) returns ``loss_rpn_cls``, ``loss_rpn_box``, ``loss_semantic``
    (with the semantic branch) and per stage t ``loss_s{t}_cls``, ``loss_s{t}_box``, ``loss_s{t}_mask`` (segm),
    already weighted. ``predict`` returns per image input-frame ``Predictions`` (boxes xyxy pixels, scores,
    labels in [0, K), segm masks (N, H, W) probabilities; ``roi_masks`` (N, 28, 28) when
    ``mask_paste_frame`` is ``original``).

    Args:
        cfg: the ``htc`` config.
        input_shape: the neck's ``output_shape()`` (equal channels, doubling strides).
        num_classes: K.
        task: ``bbox`` or ``segm``.
    Raises:
        ConfigError: missing levels, unequal channels, non-doubling strides, unknown task.
    """

    def __init__(self, cfg: HTCHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int, task: str) -> None:
        super().__init__()
        if task not in TASKS:
            raise ConfigError(f"head htc supports tasks {', '.join(TASKS)}, not {task!r}")
        shape = head_input_shape(tuple(cfg.in_levels), input_shape, cfg.maxpool_last_level)
        missing = [lv for lv in cfg.in_levels if lv not in shape]
        if missing:
            raise ConfigError(f"model.head.in_levels {list(cfg.in_levels)}: {missing} not produced by the neck, "
                              f"which outputs {list(input_shape)}")
        channels = {shape[lv].channels for lv in cfg.in_levels}
        if len(channels) != 1:
            raise ConfigError(f"model.head: levels {list(cfg.in_levels)} must have equal channels, got {channels}")
        strides = [shape[lv].stride for lv in cfg.in_levels]
        if any(b != 2 * a for a, b in zip(strides, strides[1:], strict=False)):
            raise ConfigError(f"model.head: strides of {list(cfg.in_levels)} must double per level, got {strides}")
        c = channels.pop()
        self.cfg = cfg
        self.in_levels = tuple(cfg.in_levels)
        self.num_classes = num_classes
        self.with_mask = cfg.with_mask and task == "segm"
        self.num_stages = len(cfg.stage_iou_thresholds)
        anchors = StridedAnchorGenerator(tuple((s,) for s in cfg.anchor_sizes),
                                         (tuple(cfg.aspect_ratios),) * len(strides), strides)
        self.rpn = RPN(
            anchors, RPNHead(c, anchors.num_anchors_per_location()[0]), cfg.rpn_fg_iou_thresh, cfg.rpn_bg_iou_thresh,
            cfg.rpn_batch_size_per_image, cfg.rpn_positive_fraction,
            dict(training=cfg.rpn_pre_nms_top_n_train, testing=cfg.rpn_pre_nms_top_n_test),
            dict(training=cfg.rpn_post_nms_top_n_train, testing=cfg.rpn_post_nms_top_n_test), cfg.rpn_nms_thresh,
            box_beta=cfg.rpn_box_beta)
        roi_strides = [shape[lv].stride for lv in cfg.roi_levels]
        ratio, aligned = cfg.roi_sampling_ratio, cfg.roi_align_aligned
        self.box_pool = RoIAlignPyramid(tuple(cfg.roi_levels), roi_strides, 7, ratio, aligned)
        self.box_heads = nn.ModuleList([TwoMLPHead(c * 49, cfg.representation_size) for _ in range(self.num_stages)])
        self.box_predictors = nn.ModuleList([CascadePredictor(cfg.representation_size, num_classes)
                                             for _ in range(self.num_stages)])
        self.box_coders = [BoxCoder(tuple(1.0 / s for s in stds)) for stds in cfg.stage_box_stds]
        self.sampler = BalancedPositiveNegativeSampler(cfg.box_batch_size_per_image, cfg.box_positive_fraction)
        if self.with_mask:
            self.mask_pool = RoIAlignPyramid(tuple(cfg.roi_levels), roi_strides, 14, ratio, aligned)
            self.mask_heads = nn.ModuleList([
                HTCMaskHead(c, cfg.mask_head_channels, cfg.mask_head_convs, num_classes,
                            with_conv_res=cfg.mask_info_flow and t > 0) for t in range(self.num_stages)])
        self.semantic_head = None
        if cfg.with_semantic:
            fusion = self.in_levels.index(cfg.semantic_fusion_level)
            self.semantic_head = FusedSemanticHead(c, len(self.in_levels), fusion, cfg.semantic_convs,
                                                   cfg.semantic_classes)
            self.semantic_stride = strides[fusion]
            self.semantic_pool = RoIAlignPyramid(("semantic",), [self.semantic_stride], 14, ratio, aligned)

    # ----------------------------------------------------------------------------------------- shared pieces
    def _inputs(self, features: dict[str, Tensor], batch: Batch):
        feats = head_features(features, self.in_levels, self.cfg.maxpool_last_level)
        return feats, ImageList(batch.images, [tuple(s) for s in batch.image_sizes])

    def _semantic(self, feats) -> tuple[Tensor | None, Tensor | None]:
        if self.semantic_head is None:
            return None, None
        return self.semantic_head(list(feats.values()))  # (B, K_s, H/8, W/8), (B, C, H/8, W/8)

    def _roi_features(self, pool: RoIAlignPyramid, feats, embedding: Tensor | None, boxes: list[Tensor],
                      sizes: list[tuple[int, int]]) -> Tensor:
        """(R, C, S, S) RoI features, plus the pooled semantic embedding (14x14, average-pooled to S)."""
        x = pool(feats, boxes, sizes)
        if embedding is not None:
            sem = self.semantic_pool({"semantic": embedding}, boxes, sizes)
            if sem.shape[-2:] != x.shape[-2:]:
                sem = F.adaptive_avg_pool2d(sem, x.shape[-2:])
            x = x + sem
        return x

    def _box_stage(self, t: int, feats, embedding, boxes: list[Tensor], sizes) -> tuple[Tensor, Tensor]:
        x = self._roi_features(self.box_pool, feats, embedding, boxes, sizes)
        return self.box_predictors[t](self.box_heads[t](x))  # (R, K + 1), (R, 4)

    def _mask_logits(self, t: int, x: Tensor) -> Tensor:
        """Mask head t on RoI features x, with the information flow from heads 0..t-1."""
        last = None
        if self.cfg.mask_info_flow:
            for j in range(t):
                _, last = self.mask_heads[j](x, last, return_logits=False)
        logits, _ = self.mask_heads[t](x, last)
        return logits  # (R, K, 28, 28)

    def _regress(self, t: int, deltas: Tensor, boxes: list[Tensor], sizes) -> list[Tensor]:
        counts = [len(b) for b in boxes]
        out = []
        for d, b, size in zip(deltas.split(counts), boxes, sizes, strict=True):
            out.append(clip_boxes_to_image(self.box_coders[t].decode_single(d, b), size))
        return out

    # ------------------------------------------------------------------------------------------------ training
    def _targets(self, batch: Batch) -> list[dict[str, Tensor]]:
        """torchvision targets: non-crowd, non-degenerate instances; labels + 1 (0 is background)."""
        return rcnn_targets(batch, self.with_mask, "htc")

    def _semantic_loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """Cross-entropy of the semantic logits against each image's map, padded with the ignore label and
        resized (nearest) to the logits' size (mmdet: Pad, then SegRescale 1/8)."""
        ignore = self.cfg.semantic_ignore_label
        height, width = batch.images.shape[-2:]
        maps = torch.full((len(batch.targets), height, width), ignore, dtype=torch.int64, device=logits.device)
        for i, t in enumerate(batch.targets):
            if t.semantic is None:
                raise DataError(f"image {t.image_id}: head htc with_semantic needs semantic maps; set the dataset's "
                                f"semantic_dir (COCO-stuff stuffthingmaps) or model.head.with_semantic: false")
            h, w = t.semantic.shape
            maps[i, :h, :w] = t.semantic.to(logits.device)
        maps = F.interpolate(maps[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
        return F.cross_entropy(logits, maps, ignore_index=ignore) * self.cfg.semantic_loss_weight

    def _sample(self, t: int, proposals: list[Tensor], targets) -> list[StageSamples]:
        thr = self.cfg.stage_iou_thresholds[t]
        with torch.no_grad():
            return [sample_rois(p.detach(), tg["boxes"], tg["labels"], thr, self.sampler)
                    for p, tg in zip(proposals, targets, strict=True)]

    def _mask_loss(self, t: int, feats, embedding, samples: list[StageSamples], targets, sizes) -> Tensor:
        pos = [s.labels > 0 for s in samples]
        boxes = [s.boxes[p] for s, p in zip(samples, pos, strict=True)]
        x = self._roi_features(self.mask_pool, feats, embedding, boxes, sizes)
        logits = self._mask_logits(t, x)
        labels = torch.cat([s.labels[p] for s, p in zip(samples, pos, strict=True)]) - 1
        if labels.numel() == 0:
            return logits.sum() * 0
        aligned = self.cfg.roi_align_aligned
        goal = torch.cat([mask_targets(tg["masks"], b, s.matched[p], logits.shape[-1], aligned)
                          for tg, b, s, p in zip(targets, boxes, samples, pos, strict=True)])
        if aligned:
            goal = (goal >= 0.5).to(goal.dtype)  # mmdet's binarised crop_and_resize targets
        return F.binary_cross_entropy_with_logits(logits[torch.arange(len(labels)), labels], goal)

    def forward(self, features: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        feats, images = self._inputs(features, batch)
        targets = self._targets(batch)
        sizes = images.image_sizes
        proposals, rpn_losses = self.rpn(images, feats, targets)
        losses = {"loss_rpn_cls": rpn_losses["loss_objectness"], "loss_rpn_box": rpn_losses["loss_rpn_box_reg"]}
        sem_logits, embedding = self._semantic(feats)
        if sem_logits is not None:
            losses["loss_semantic"] = self._semantic_loss(sem_logits, batch)
        for t in range(self.num_stages):
            weight = self.cfg.stage_loss_weights[t]
            samples = self._sample(t, proposals, targets)
            boxes = [s.boxes for s in samples]
            cls_logits, deltas = self._box_stage(t, feats, embedding, boxes, sizes)
            labels = torch.cat([s.labels for s in samples])
            pos = torch.where(labels > 0)[0]
            gt = torch.cat([tg["boxes"][s.matched[s.labels > 0]] for tg, s in zip(targets, samples, strict=True)])
            goal = self.box_coders[t].encode_single(gt, torch.cat(boxes)[pos])  # positives in image order
            losses[f"loss_s{t}_cls"] = F.cross_entropy(cls_logits, labels) * weight
            losses[f"loss_s{t}_box"] = box_loss(deltas[pos], goal, self.cfg.box_beta) / max(len(labels), 1) * weight
            with torch.no_grad():  # next proposals: this stage's regressed RoIs, ground-truth RoIs dropped
                refined = self._regress(t, deltas.detach(), boxes, sizes)
                proposals = [r[~s.is_gt] for r, s in zip(refined, samples, strict=True)]
            if self.with_mask:
                mask_samples = self._sample(t, proposals, targets) if self.cfg.interleaved else samples
                losses[f"loss_s{t}_mask"] = self._mask_loss(t, feats, embedding, mask_samples, targets, sizes) * weight
        return losses

    # --------------------------------------------------------------------------------------------- inference
    def _detections(self, logits: Tensor, boxes: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """Per-class score threshold and NMS over class-agnostic boxes; (N, 4), (N,), labels (N,) in [0, K)."""
        scores = logits.softmax(-1)[:, 1:]  # (R, K)
        k = scores.shape[1]
        labels = torch.arange(k, device=scores.device).expand_as(scores)
        cand = boxes[:, None].expand(-1, k, 4)
        keep = scores > self.cfg.box_score_thresh
        cand, scores, labels = cand[keep], scores[keep], labels[keep]
        keep = batched_nms(cand, scores, labels, self.cfg.box_nms_thresh)[: self.cfg.box_detections_per_img]
        return cand[keep], scores[keep], labels[keep]

    @torch.no_grad()
    def predict(self, features: dict[str, Tensor], batch: Batch) -> list[Predictions]:
        feats, images = self._inputs(features, batch)
        sizes = images.image_sizes
        rois, _ = self.rpn(images, feats)
        _, embedding = self._semantic(feats)
        ms_logits = []
        for t in range(self.num_stages):
            logits, deltas = self._box_stage(t, feats, embedding, rois, sizes)
            ms_logits.append(logits)
            last_deltas = deltas
            if t < self.num_stages - 1:
                rois = self._regress(t, deltas, rois, sizes)
        final = self._regress(self.num_stages - 1, last_deltas, rois, sizes)
        mean_logits = (sum(ms_logits) / len(ms_logits)).split([len(r) for r in rois])
        dets = [self._detections(lg, b, s) for lg, b, s in zip(mean_logits, final, sizes, strict=True)]
        roi_masks: list[Tensor | None] = [None] * len(dets)
        if self.with_mask:
            boxes = [d[0] for d in dets]
            x = self._roi_features(self.mask_pool, feats, embedding, boxes, sizes)
            last, probs = None, []
            for t in range(self.num_stages):
                logits, last = self.mask_heads[t](x, last if self.cfg.mask_info_flow else None)
                probs.append(logits.sigmoid())
            merged = (sum(probs) / len(probs)).split([len(b) for b in boxes])
            roi_masks = [m[torch.arange(len(d[2])), d[2]] for m, d in zip(merged, dets, strict=True)]
        out = []
        for (det_boxes, scores, labels), roi, meta in zip(dets, roi_masks, batch.targets, strict=True):
            pred = Predictions(boxes=det_boxes, scores=scores, labels=labels, image_id=meta.image_id, roi_masks=roi)
            out.append(self.finish_postprocessed(pred, meta))  # masks (N, H, W) pasted over meta.image_size
        return out


    # ------------------------------------------------------------------------------------------- export
    def export_outputs(self, features: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """The head's FPN levels in ``in_levels`` order (the last max-pooled when ``maxpool_last_level``),
        each (B, C, H_l, W_l) float32. There is no ``decode_outputs``: decoding runs the RPN, the cascade and
        the mask heads, so HTC exports only with ``--postprocess`` (:meth:`export_postprocess`)."""
        return tuple(head_features(features, self.in_levels, self.cfg.maxpool_last_level).values())

    def export_postprocess(self, outputs: tuple[Tensor, ...], image_size: Tensor, scale_factor: Tensor,
                           input_size: tuple[int, int]) -> dict[str, Tensor]:
        """Traceable :meth:`predict` of one image (``lsvr export --postprocess``; :mod:`lsvr_core.export.htc`).

        Args:
            outputs: :meth:`export_outputs` of a batch of one.
            image_size: (2,) int64 ``[h, w]`` of the resized image inside the padding (boxes are clipped to it).
            scale_factor: unused. input_size: the padded ``(H, W)``.
        Returns:
            ``boxes`` (N, 4) float32 xyxy input pixels, ``scores`` (N,), ``labels`` (N,) int64 in [0, K), and
            for segm ``roi_masks`` (N, 28, 28) float32 probabilities over the boxes (:meth:`finish_postprocessed`
            pastes them as :meth:`predict` does).
        """
        from lsvr_core.export.htc import htc_detections

        return htc_detections(self, outputs, image_size, input_size)

    def finish_postprocessed(self, pred: Predictions, meta: Targets) -> Predictions:
        """Input-frame predictions of an exported graph as :meth:`predict` gives them: its ``roi_masks``
        (N, 28, 28) pasted over ``meta.image_size`` into ``masks`` (N, H, W), kept only for
        ``mask_paste_frame: original``."""
        if pred.roi_masks is None:
            return pred
        roi = pred.roi_masks
        pred.masks = paste_masks_in_image(roi[:, None], pred.boxes, tuple(meta.image_size))[:, 0]
        pred.roi_masks = roi if self.cfg.mask_paste_frame == "original" else None
        return pred


def build_htc_head(cfg: HTCHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int, task: str, *,
                   registry: Registry | None = None) -> HTCHead:
    """Factory of the built-in ``htc`` head; see :class:`HTCHead`."""
    return HTCHead(cfg, input_shape, num_classes, task)
