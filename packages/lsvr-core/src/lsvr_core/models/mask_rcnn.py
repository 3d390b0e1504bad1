"""Mask R-CNN head (He et al. 2017) over torchvision's RPN, RoI heads, RoIAlign pooler, box and mask heads,
fed by any backbone + FPN (the detector of LESA spec §4.1).

What lsvr adds around torchvision: feature strides come from the neck's ``output_shape()`` (torchvision
infers anchor strides and RoIAlign scales from padded-size / feature-size ratios, which is off for P6 on
sizes that are not multiples of 64), contiguous labels are shifted by one for torchvision's background
class 0, crowd and degenerate instances are removed from the training targets, and masks are pasted into
the input image. The losses are torchvision's (smooth-L1 box losses; the reference mmdet config uses L1),
and its RoIAlign uses ``aligned=False`` (mmdet 2.x: ``aligned=True``). Options switch each of these to
mmdet 2.x (see :class:`MaskRCNNHeadConfig`): ``roi_align_aligned``, ``box_loss: l1``, ``maxpool_last_level``
(P6 by max-pooling P5), ``mask_paste_frame: original``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.rpn import RPNHead

from lsvr_core.builtin.mask_rcnn_config import MaskRCNNHeadConfig
from lsvr_core.contracts import Registry, ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.models.norm import group_norm_layer
from lsvr_core.models.rcnn_parts import RPN, RCNNRoIHeads, RoIAlignPyramid, maxpool_level, rcnn_targets
from lsvr_core.structures import Batch, Predictions, Targets

TASKS = ("bbox", "segm")


class StridedAnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` with the level strides given (pixels) instead of inferred.

    Anchors of a level sit at ``(x s, y s)`` plus torchvision's zero-centred cell anchors, as in mmdet 2.x
    (``center_offset=0``).
    """

    def __init__(self, sizes: tuple[tuple[int, ...], ...], aspect_ratios: tuple[tuple[float, ...], ...],
                 strides: list[int]) -> None:
        super().__init__(sizes, aspect_ratios)
        self.level_strides = list(strides)

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        anchors = self.single(feature_maps)
        return [anchors for _ in image_list.image_sizes]

    def single(self, feature_maps: list[Tensor]) -> Tensor:
        """The anchors of one image, (sum_l H_l W_l A, 4) float xyxy pixels, levels in order, each in
        (y, x, anchor) order."""
        grid_sizes = [fm.shape[-2:] for fm in feature_maps]
        device = feature_maps[0].device
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.level_strides]
        self.set_cell_anchors(feature_maps[0].dtype, device)
        return torch.cat(self.grid_anchors(grid_sizes, strides))


def head_input_shape(in_levels: tuple[str, ...], input_shape: dict[str, ShapeSpec],
                     maxpool_last_level: bool) -> dict[str, ShapeSpec]:
    """The neck's levels, plus the max-pooled last level when ``maxpool_last_level`` (stride doubled).

    Raises:
        ConfigError: the neck already outputs the level to pool, or lacks the one to pool from.
    """
    shape = dict(input_shape)
    if maxpool_last_level:
        last, prev = in_levels[-1], in_levels[-2]
        if last in input_shape:
            raise ConfigError(f"model.head.maxpool_last_level: the neck already outputs {last!r}; set the neck's "
                              f"num_extra one lower (mmdet's FPN without extra convs)")
        if prev in input_shape:
            shape[last] = ShapeSpec(input_shape[prev].channels, 2 * input_shape[prev].stride)
    return shape


def head_features(features: dict[str, Tensor], in_levels: tuple[str, ...],
                  maxpool_last_level: bool) -> OrderedDict:
    """The head's input levels in order, the last made by max-pooling when ``maxpool_last_level``."""
    feats = OrderedDict((lv, features[lv]) for lv in (in_levels[:-1] if maxpool_last_level else in_levels))
    if maxpool_last_level:
        feats[in_levels[-1]] = maxpool_level(feats[in_levels[-2]])  # (B, C, ceil(H / 2), ceil(W / 2))
    return feats


class MaskRCNNHead(nn.Module):
    """RPN + RoI box head (+ mask head for ``segm``) over the levels of an FPN.

    ``forward(features, batch)`` (training) returns ``loss_rpn_cls``, ``loss_rpn_box``, ``loss_cls``,
    ``loss_box`` and (segm) ``loss_mask``: scalar float32, torchvision's normalisation.
    ``predict(features, batch)`` returns per image ``Predictions`` in the input frame: boxes (N, 4) xyxy
    pixels clipped to the image size, scores, labels in [0, num_classes) and, for segm, masks (N, H, W)
    float32 probabilities over the input image size ``Targets.image_size``.

    Args:
        cfg: the ``mask_rcnn`` config (thresholds, sizes; see :class:`MaskRCNNHeadConfig`).
        input_shape: the neck's ``output_shape()``; every level of ``cfg.in_levels`` with equal channels,
            strides doubling from level to level.
        num_classes: foreground classes.
        task: ``bbox`` or ``segm``.
    Raises:
        ConfigError: missing levels, unequal channels, non-doubling strides, unknown task.
    """

    def __init__(self, cfg: MaskRCNNHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int,
                 task: str) -> None:
        super().__init__()
        input_shape = head_input_shape(tuple(cfg.in_levels), input_shape, cfg.maxpool_last_level)
        if task not in TASKS:
            raise ConfigError(f"head mask_rcnn supports tasks {', '.join(TASKS)}, not {task!r}")
        missing = [lv for lv in cfg.in_levels if lv not in input_shape]
        if missing:
            raise ConfigError(f"model.head.in_levels {list(cfg.in_levels)}: {missing} not produced by the neck, "
                              f"which outputs {list(input_shape)} (for p2..p6 use an fpn with in_levels "
                              f"[c2, c3, c4, c5] and num_extra: 1)")
        channels = {input_shape[lv].channels for lv in cfg.in_levels}
        if len(channels) != 1:
            raise ConfigError(f"model.head: levels {list(cfg.in_levels)} must have equal channels, got {channels}")
        strides = [input_shape[lv].stride for lv in cfg.in_levels]
        if any(b != 2 * a for a, b in zip(strides, strides[1:], strict=False)):
            raise ConfigError(f"model.head: strides of {list(cfg.in_levels)} must double per level, got {strides}")
        c = channels.pop()
        self.in_levels, self.roi_levels = tuple(cfg.in_levels), tuple(cfg.roi_levels)
        self.num_classes = num_classes
        self.with_mask = cfg.with_mask and task == "segm"
        self.maxpool_last_level = cfg.maxpool_last_level
        self.mask_paste_frame = cfg.mask_paste_frame
        beta = 0.0 if cfg.box_loss == "l1" else 1.0 / 9
        aligned = cfg.roi_align_aligned
        anchors = StridedAnchorGenerator(tuple((s,) for s in cfg.anchor_sizes),
                                         (tuple(cfg.aspect_ratios),) * len(strides), strides)
        self.rpn = RPN(
            anchors, RPNHead(c, anchors.num_anchors_per_location()[0]), cfg.rpn_fg_iou_thresh,
            cfg.rpn_bg_iou_thresh, cfg.rpn_batch_size_per_image, cfg.rpn_positive_fraction,
            dict(training=cfg.rpn_pre_nms_top_n_train, testing=cfg.rpn_pre_nms_top_n_test),
            dict(training=cfg.rpn_post_nms_top_n_train, testing=cfg.rpn_post_nms_top_n_test), cfg.rpn_nms_thresh,
            box_beta=beta)
        roi_strides = [input_shape[lv].stride for lv in cfg.roi_levels]
        norm = group_norm_layer(32) if cfg.norm == "gn" else None
        if norm is None:
            box_head: nn.Module = TwoMLPHead(c * 7 * 7, cfg.representation_size)
        else:
            box_head = FastRCNNConvFCHead((c, 7, 7), [c] * 4, [cfg.representation_size], norm_layer=norm)
        mask_kwargs = {}
        if self.with_mask:
            mask_kwargs = dict(
                mask_roi_pool=RoIAlignPyramid(cfg.roi_levels, roi_strides, 14, cfg.roi_sampling_ratio, aligned),
                mask_head=MaskRCNNHeads(c, [cfg.mask_head_channels] * cfg.mask_head_convs, 1, norm_layer=norm),
                mask_predictor=MaskRCNNPredictor(cfg.mask_head_channels, cfg.mask_head_channels, num_classes + 1),
            )
        self.roi_heads = RCNNRoIHeads(
            RoIAlignPyramid(cfg.roi_levels, roi_strides, 7, cfg.roi_sampling_ratio, aligned), box_head,
            FastRCNNPredictor(cfg.representation_size, num_classes + 1), cfg.box_fg_iou_thresh,
            cfg.box_bg_iou_thresh, cfg.box_batch_size_per_image, cfg.box_positive_fraction, None,
            cfg.box_score_thresh, cfg.box_nms_thresh, cfg.box_detections_per_img, **mask_kwargs, box_beta=beta,
            aligned=aligned)

    def _inputs(self, features: dict[str, Tensor], batch: Batch) -> tuple[OrderedDict, ImageList]:
        feats = head_features(features, self.in_levels, self.maxpool_last_level)
        return feats, ImageList(batch.images, [tuple(s) for s in batch.image_sizes])

    def _targets(self, batch: Batch) -> list[dict[str, Tensor]]:
        """torchvision targets: non-crowd, non-degenerate instances; labels + 1 (0 is background)."""
        return rcnn_targets(batch, self.with_mask, "mask_rcnn")

    def forward(self, features: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        feats, images = self._inputs(features, batch)
        targets = self._targets(batch)
        proposals, rpn_losses = self.rpn(images, feats, targets)
        _, roi_losses = self.roi_heads(feats, proposals, images.image_sizes, targets)
        names = {"loss_objectness": "loss_rpn_cls", "loss_rpn_box_reg": "loss_rpn_box",
                 "loss_classifier": "loss_cls", "loss_box_reg": "loss_box", "loss_mask": "loss_mask"}
        return {names[k]: v for k, v in {**rpn_losses, **roi_losses}.items()}

    @torch.no_grad()
    def predict(self, features: dict[str, Tensor], batch: Batch) -> list[Predictions]:
        feats, images = self._inputs(features, batch)
        proposals, _ = self.rpn(images, feats)
        detections, _ = self.roi_heads(feats, proposals, images.image_sizes)
        out = []
        for det, t in zip(detections, batch.targets, strict=True):
            pred = Predictions(boxes=det["boxes"], scores=det["scores"], labels=det["labels"] - 1, image_id=t.image_id)
            out.append(self._paste(pred, det["masks"][:, 0], t) if self.with_mask else pred)
        return out

    def _paste(self, pred: Predictions, roi_masks: Tensor, meta: Targets) -> Predictions:
        """Masks (N, H, W) pasted over the input image size ``meta.image_size``; with ``mask_paste_frame:
        original`` the RoI masks (N, 28, 28) are kept too, for ``Predictions.to_original`` to paste."""
        pred.masks = paste_masks_in_image(roi_masks[:, None], pred.boxes, tuple(meta.image_size))[:, 0]
        pred.roi_masks = roi_masks if self.mask_paste_frame == "original" else None
        return pred

    # ------------------------------------------------------------------------------------------- export
    def export_outputs(self, features: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """The head's FPN levels in ``in_levels`` order (the last max-pooled when ``maxpool_last_level``),
        each (B, C, H_l, W_l) float32. There is no ``decode_outputs``: decoding runs the RPN and RoI heads,
        so Mask R-CNN exports only with ``--postprocess`` (:meth:`export_postprocess`)."""
        return tuple(head_features(features, self.in_levels, self.maxpool_last_level).values())

    def export_postprocess(self, outputs: tuple[Tensor, ...], image_size: Tensor, scale_factor: Tensor,
                           input_size: tuple[int, int]) -> dict[str, Tensor]:
        """Traceable :meth:`predict` of one image (``lsvr export --postprocess``; :mod:`lsvr_core.export.rcnn`).

        Args:
            outputs: :meth:`export_outputs` of a batch of one.
            image_size: (2,) int64 ``[h, w]`` of the resized image inside the padding (boxes are clipped to it).
            scale_factor: unused. input_size: the padded ``(H, W)``.
        Returns:
            ``boxes`` (K, 4) float32 xyxy input pixels, ``scores`` (K,), ``labels`` (K,) int64 in
            [0, num_classes), and for segm ``roi_masks`` (K, 28, 28) float32 probabilities over the boxes
            (:meth:`finish_postprocessed` pastes them as :meth:`predict` does).
        """
        from lsvr_core.export.rcnn import roi_detections, rpn_proposals

        feats = OrderedDict(zip(self.in_levels, outputs, strict=True))
        levels = list(feats.values())
        proposals = rpn_proposals(self.rpn, self.rpn.anchor_generator.single(levels), levels, image_size)
        return roi_detections(self.roi_heads, feats, proposals, image_size, input_size)

    def finish_postprocessed(self, pred: Predictions, meta: Targets) -> Predictions:
        """Input-frame predictions of an exported graph as :meth:`predict` gives them: its ``roi_masks``
        (K, 28, 28) pasted over ``meta.image_size`` (and kept for ``mask_paste_frame: original``)."""
        if pred.roi_masks is None:
            return pred
        return self._paste(pred, pred.roi_masks, meta)


def build_mask_rcnn_head(cfg: MaskRCNNHeadConfig, input_shape: dict[str, ShapeSpec], num_classes: int,
                         task: str, *, registry: Registry | None = None) -> MaskRCNNHead:
    """Factory of the built-in ``mask_rcnn`` head; see :class:`MaskRCNNHead`."""
    return MaskRCNNHead(cfg, input_shape, num_classes, task)
