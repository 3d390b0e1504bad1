"""Multi-scale + flip test-time augmentation (``eval.test_time_aug``) and the merging of its detections.

Per image: for every scale (and its mirror when ``flip``), resize the original image keeping the aspect ratio
(mmdetection's ``img_scale`` rule), run the model, map the predictions back to the original frame, drop those
whose sqrt(area) at that scale lies outside the scale's range, then merge all of them per class by box voting
(the reference LSNet/ATSS ``aug_test_vote``, LSNet spec §6) or by NMS over the union.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from lsvr_core.errors import ConfigError
from lsvr_core.structures import Predictions, Targets, collate

# semantic re-ordering of landmarks predicted on a mirrored image, after their x coordinates were un-mirrored
KEYPOINT_FLIP_PERM = (0, *(j for i in range(1, 17, 2) for j in (i + 1, i)))  # COCO left <-> right pairs


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int, float]:
    """mmdetection's keep-ratio rule: factor = min(long / max(h, w), short / min(h, w)); new size =
    int(size * factor + 0.5).

    Returns:
        (new_height, new_width, factor).
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5), factor


def augmented_inputs(image: Tensor, image_id: int, scales: list[tuple[int, int]],
                     flip: bool) -> Iterator[tuple[int, Tensor, Targets]]:
    """Yield ``(scale index, image (3, h, w) float, meta)`` for every scale, unflipped then flipped.

    Args:
        image: (3, H, W) uint8 or float RGB in the original pixel grid.
    """
    h, w = int(image.shape[-2]), int(image.shape[-1])
    for i, scale in enumerate(scales):
        nh, nw, _ = rescale_size(h, w, scale)
        resized = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[0]
        for flipped in (False, True) if flip else (False,):
            meta = Targets(boxes=torch.zeros((0, 4)), labels=torch.zeros((0,), dtype=torch.int64), image_id=image_id,
                           orig_size=(h, w), image_size=(nh, nw), scale=(nw / w, nh / h), flipped=flipped)
            yield i, (resized.flip(-1) if flipped else resized), meta


def unflip_landmark_order(pred: Predictions) -> Predictions:
    """Relabel the landmarks of an original-frame prediction made on a mirrored image: ``points`` extras by
    their declared ``flip_perm`` (e.g. LSNet's left/right extreme points), contours keep point 0 and reverse
    (LSNet's orientation rule, spec §7.3), 17 COCO keypoints swap left/right."""
    contours = pred.contours
    if contours is not None and contours.shape[1] > 1:
        contours = torch.cat([contours[:, :1], contours[:, 1:].flip(1)], dim=1)
    keypoints = pred.keypoints
    if keypoints is not None and keypoints.shape[1] == len(KEYPOINT_FLIP_PERM):
        keypoints = keypoints[:, list(KEYPOINT_FLIP_PERM)]

    def perm(spec: Any, value: Any) -> Any:
        if spec.kind == "points" and spec.flip_perm is not None and value.shape[1] == len(spec.flip_perm):
            return value[:, list(spec.flip_perm)]
        return value

    return replace(pred, contours=contours, keypoints=keypoints, extras=pred.extras.map(perm))


def _select(pred: Predictions, keep: Tensor) -> Predictions:
    def sel(v: Tensor | None) -> Tensor | None:
        return None if v is None else v[keep]

    return replace(pred, boxes=pred.boxes[keep], scores=pred.scores[keep], labels=pred.labels[keep],
                   masks=sel(pred.masks), contours=sel(pred.contours), keypoints=sel(pred.keypoints),
                   extras=pred.extras.select(keep))


def _cat(preds: list[Predictions], image_id: int) -> Predictions:
    def cat(values: list[Any]) -> Tensor | None:
        return None if not values or any(v is None for v in values) else torch.cat(values)

    out = Predictions(boxes=cat([p.boxes for p in preds]), scores=cat([p.scores for p in preds]),
                      labels=cat([p.labels for p in preds]), image_id=image_id, masks=cat([p.masks for p in preds]),
                      contours=cat([p.contours for p in preds]), keypoints=cat([p.keypoints for p in preds]),
                      frame="original")
    for name, spec, _ in preds[0].extras.items():
        if all(name in p.extras for p in preds) and spec.kind in ("points", "boxes", "scalar"):
            out.extras.add(spec, torch.cat([p.extras.get(name) for p in preds]))
    return out


def _landmarks(pred: Predictions) -> tuple[Tensor, list[tuple[str, Any, tuple[int, ...]]]]:
    """Flatten the point landmarks (contours, keypoints xy, ``points`` / ``boxes`` extras) to (N, D) for voting;
    returns the layout to rebuild them. Scalar extras are not voted and are dropped."""
    n = len(pred)
    parts, layout = [pred.boxes.new_zeros((n, 0))], []
    if pred.contours is not None:
        parts.append(pred.contours.reshape(n, -1).float())
        layout.append(("contours", None, tuple(pred.contours.shape[1:])))
    if pred.keypoints is not None:
        parts.append(pred.keypoints[..., :2].reshape(n, -1).float())
        layout.append(("keypoints", None, (pred.keypoints.shape[1], 2)))
    for name, spec, value in pred.extras.items():
        if spec.kind in ("points", "boxes"):
            parts.append(value.reshape(n, -1).float())
            layout.append((name, spec, tuple(value.shape[1:])))
    return torch.cat(parts, dim=1), layout


def box_vote(boxes: Tensor, scores: Tensor, vectors: Tensor, iou_thr: float,
             soft_thr: float) -> tuple[Tensor, Tensor, Tensor]:
    """Box voting of one class (ATSS / LSNet ``instances_vote``).

    Repeatedly take the highest-scoring detection, gather every remaining one with IoU >= ``iou_thr`` (itself
    included); a lone detection is kept as is; a cluster becomes its score-weighted mean box and landmark vector
    with the cluster's max score, plus "soft" copies of the members with score * (1 - IoU) >= ``soft_thr``.
    Reference quirk kept: a class with a single detection over all augmentations yields nothing.

    Args:
        boxes: (N, 4) xyxy. scores: (N,). vectors: (N, D) landmark coordinates voted like the boxes.
    Returns:
        boxes (M, 4), scores (M,), vectors (M, D), by decreasing score.
    Source: LSNet spec §6 (reference ``lsnet.py`` ``instances_vote``, ``aug_test_vote``).
    """
    if len(boxes) <= 1:
        return boxes[:0], scores[:0], vectors[:0]
    order = scores.argsort(descending=True)
    boxes, scores, vectors = boxes[order], scores[order], vectors[order]
    out_b, out_s, out_v = [], [], []
    while len(boxes):
        iou = box_iou(boxes[:1], boxes)[0]
        iou[0] = 1.0
        member = iou >= iou_thr
        b, s, v, o = boxes[member], scores[member], vectors[member], iou[member]
        boxes, scores, vectors = boxes[~member], scores[~member], vectors[~member]
        if len(b) == 1:
            out_b.append(b)
            out_s.append(s)
            out_v.append(v)
            continue
        w = s[:, None] / s.sum()
        soft = s * (1 - o)
        keep = soft >= soft_thr
        out_b += [(b * w).sum(0, keepdim=True), b[keep]]
        out_s += [s.max()[None], soft[keep]]
        out_v += [(v * w).sum(0, keepdim=True), v[keep]]
    b, s, v = torch.cat(out_b), torch.cat(out_s), torch.cat(out_v)
    order = s.argsort(descending=True)
    return b[order], s[order], v[order]


def merge_predictions(preds: list[Predictions], cfg: Any, image_id: int) -> Predictions:
    """Merge per-augmentation original-frame predictions of one image (``cfg``: ``eval.test_time_aug``).

    Raises:
        ConfigError: ``merge: vote`` on predictions with masks (masks cannot be averaged; use ``nms``).
    """
    allp = _cat(preds, image_id)
    if cfg.merge == "nms":
        keep = batched_nms(allp.boxes, allp.scores, allp.labels, cfg.nms_iou)[: cfg.max_per_img]
        return _select(allp, keep)
    if allp.masks is not None:
        raise ConfigError("eval.test_time_aug.merge=vote cannot merge mask predictions; use merge: nms")
    vectors, layout = _landmarks(allp)
    parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    for label in allp.labels.unique().tolist():
        idx = (allp.labels == label).nonzero().squeeze(1)
        b, s, v = box_vote(allp.boxes[idx], allp.scores[idx], vectors[idx], cfg.vote_iou, cfg.soft_score_thr)
        parts.append((b, s, v, torch.full_like(s, label, dtype=torch.int64)))
    if not parts:
        return _select(allp, torch.zeros(0, dtype=torch.int64))
    b, s, v, lab = (torch.cat(x) for x in zip(*parts, strict=True))
    top = s.argsort(descending=True)[: cfg.max_per_img]
    out = Predictions(boxes=b[top], scores=s[top], labels=lab[top], image_id=image_id, frame="original")
    start = 0
    for name, spec, shape in layout:
        size = math.prod(shape)
        value = v[top, start:start + size].reshape(-1, *shape)
        start += size
        if name == "keypoints":
            out.keypoints = torch.cat([value, value.new_ones((*value.shape[:2], 1))], dim=-1)
        elif name == "contours":
            out.contours = value
        else:
            out.extras.add(spec, value)
    return out


@torch.no_grad()
def predict_tta(model: nn.Module, image: Tensor, image_id: int, cfg: Any, *, device: torch.device, precision: Any,
                size_divisor: int) -> Predictions:
    """Original-frame predictions of one image under ``cfg`` (``eval.test_time_aug``), on the CPU in float32.

    Args:
        model: a :class:`~lsvr_core.models.detector.Detector` in eval mode.
        image: (3, H, W) RGB 0-255 in the original pixel grid.
    """
    from lsvr_core.engine.evaluate import to_cpu_fp32

    preds = []
    for i, img, meta in augmented_inputs(image, image_id, list(cfg.scales), cfg.flip):
        batch = collate([(img, meta)], size_divisor).to(device)
        with precision.autocast():
            pred = to_cpu_fp32(model(batch)[0])
        if cfg.scale_ranges is not None:  # sqrt(area) measured at this scale (reference remove_boxes, §11.17)
            lo, hi = cfg.scale_ranges[i]
            sx, sy = meta.scale
            area = (pred.boxes[:, 2] - pred.boxes[:, 0]) * (pred.boxes[:, 3] - pred.boxes[:, 1]) * sx * sy
            pred = _select(pred, ((area >= lo * lo) & (area <= hi * hi)).nonzero().squeeze(1))
        preds.append(unflip_landmark_order(pred) if meta.flipped else pred)
    return merge_predictions(preds, cfg, image_id)


def original_image(dataset: Any, index: int) -> tuple[Tensor, int]:
    """(image (3, H, W) in the file's pixel grid, image id) of item ``index`` of an eval dataset (or a Subset).

    Uses the dataset's ``original_sample(index)`` when it has one (lsvr-data datasets); otherwise the item as the
    dataset gives it, resized back to its ``orig_size``.
    """
    base, i = dataset, index
    while hasattr(base, "indices") and hasattr(base, "dataset"):  # torch.utils.data.Subset
        base, i = base.dataset, base.indices[i]
    if callable(getattr(base, "original_sample", None)):
        sample = base.original_sample(i)
        return sample.image, int(sample.image_id)
    image, meta = base[i]
    if meta.flipped:
        image = image.flip(-1)
    image = F.interpolate(image[None].float(), size=tuple(meta.orig_size), mode="bilinear", align_corners=False)[0]
    return image, int(meta.image_id)


def predict_dataset_tta(model: nn.Module, dataset: Any, cfg: Any, *, device: torch.device, precision: Any,
                        dist: Any, size_divisor: int) -> list[tuple[int, Predictions]]:
    """:func:`predict_tta` over a dataset, images sharded over ranks (index % world_size), gathered and sorted
    by index on every rank (the TTA counterpart of ``predict_dataset``)."""
    from lsvr_core.engine import distributed as D

    model.eval()
    local = []
    for index in range(dist.rank, len(dataset), dist.world_size):
        image, image_id = original_image(dataset, index)
        local.append((index, predict_tta(model, image, image_id, cfg, device=device, precision=precision,
                                         size_divisor=size_divisor)))
    gathered = [item for part in D.all_gather_objects(local, dist) for item in part]
    return sorted(gathered, key=lambda item: item[0])
