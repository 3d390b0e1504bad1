"""The ``voc`` evaluator: VOC mAP@0.5 (VOC07 11-point or area method) and AP averaged over IoU 0.50:0.95.

Matching follows the VOC devkit: detections of a class, in decreasing score order, take the ground-truth box
of the same image with the highest IoU; IoU > threshold and not yet taken -> true positive, already taken ->
false positive; a match to a ``difficult`` (or crowd) box counts as neither. Boxes are continuous pixels, so
IoU has no "+1" (see :mod:`lsvr_data.voc`). Works on any dataset exposing ``targets(index)`` and
``index_of(image_id)``. Source: MutualGuide spec §6 step 5 (11-point AP at every IoU in 0.5:0.05:0.95).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from lsvr_core.api import DataError, Predictions, Registry
from lsvr_data.config import VocEvaluatorConfig

log = logging.getLogger("lsvr_data")

IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """Area under the PR curve: VOC07 11-point interpolation, or the exact area of the monotone envelope."""
    if use_07_metric:
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]).sum())


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def class_ap(dets: list[tuple[int, float, np.ndarray]], gts: dict[int, tuple[np.ndarray, np.ndarray]],
             thresholds: Sequence[float], use_07_metric: bool) -> np.ndarray | None:
    """AP of one class at each IoU threshold.

    Args:
        dets: (image id, score, xyxy box) detections of the class.
        gts: image id -> (boxes (G, 4), ignore flags (G,)) of the class.
    Returns:
        (len(thresholds),) APs, or None when the class has no non-ignored ground truth.
    """
    npos = int(sum((~ign).sum() for _, ign in gts.values()))
    if npos == 0:
        return None
    order = np.argsort([-s for _, s, _ in dets], kind="stable")
    n = len(order)
    best_iou = np.zeros(n)
    best_key = np.full(n, -1, dtype=np.int64)  # unique id of the best-matching GT box
    best_ignored = np.zeros(n, dtype=bool)
    offsets, off = {}, 0
    for image_id, (boxes, _) in gts.items():
        offsets[image_id] = off
        off += len(boxes)
    for rank, d in enumerate(order):
        image_id, _, box = dets[d]
        if image_id not in gts or len(gts[image_id][0]) == 0:
            continue
        boxes, ignored = gts[image_id]
        ious = _iou(box[None], boxes)[0]
        j = int(ious.argmax())
        best_iou[rank], best_key[rank], best_ignored[rank] = ious[j], offsets[image_id] + j, ignored[j]
    aps = []
    for t in thresholds:
        hit = best_iou > t
        candidate = hit & ~best_ignored
        first = np.zeros(n, dtype=bool)
        idx = np.nonzero(candidate)[0]
        _, first_pos = np.unique(best_key[idx], return_index=True)
        first[idx[first_pos]] = True
        tp = first
        fp = ~hit | (candidate & ~first)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / npos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        aps.append(voc_ap(recall, precision, use_07_metric))
    return np.array(aps)


class VocEvaluator:
    """Accumulate original-frame predictions; ``evaluate()`` -> ``voc/mAP50``, ``voc/mAP75``, ``voc/mAP``.

    Args:
        dataset: gives ground truth through ``targets(index)``, ``index_of(image_id)`` and ``classes``.
        use_07_metric: 11-point AP (VOC2007 test) instead of the area method.
        per_class: also report ``voc/AP50_<class>``.
    """

    def __init__(self, dataset: Any, use_07_metric: bool = True, per_class: bool = False) -> None:
        for attr in ("targets", "index_of", "classes"):
            if not hasattr(dataset, attr):
                raise DataError(f"the voc evaluator needs a dataset with {attr}; {type(dataset).__name__} lacks it")
        self.dataset = dataset
        self.use_07_metric = use_07_metric
        self.per_class = per_class
        self.reset()

    def reset(self) -> None:
        self.dets: dict[int, list[tuple[int, float, np.ndarray]]] = {}
        self.image_ids: set[int] = set()

    def register_image_ids(self, image_ids: Sequence[int]) -> None:
        self.image_ids.update(int(i) for i in image_ids)

    def process(self, predictions: list[Predictions]) -> None:
        for pred in predictions:
            if pred.frame != "original":
                raise DataError(f"image {pred.image_id}: the voc evaluator needs original-frame predictions")
            image_id = int(pred.image_id)
            self.image_ids.add(image_id)
            boxes = pred.boxes.detach().float().cpu().numpy()
            scores = pred.scores.detach().float().cpu().numpy()
            for box, score, label in zip(boxes, scores, pred.labels.detach().cpu().tolist(), strict=True):
                self.dets.setdefault(int(label), []).append((image_id, float(score), box))

    def _ground_truth(self) -> dict[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """label -> image id -> (boxes, ignore flags), over the processed images."""
        out: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {c: {} for c in range(len(self.dataset.classes))}
        for image_id in sorted(self.image_ids):
            t = self.dataset.targets(self.dataset.index_of(image_id))
            ignore = t.iscrowd.numpy().copy()
            difficult = t.extras.get("difficult")
            if difficult is not None:
                ignore |= difficult.numpy()
            labels, boxes = t.labels.numpy(), t.boxes.numpy()
            for c in range(len(self.dataset.classes)):
                sel = labels == c
                out[c][image_id] = (boxes[sel], ignore[sel])
        return out

    def evaluate(self) -> dict[str, float]:
        if not self.image_ids:
            log.warning("voc evaluator: no image was processed; returning no metrics")
            return {}
        gts = self._ground_truth()
        per_class: dict[str, np.ndarray] = {}
        for c, name in enumerate(self.dataset.classes):
            aps = class_ap(self.dets.get(c, []), gts[c], IOU_THRESHOLDS, self.use_07_metric)
            if aps is not None:
                per_class[name] = aps
        if not per_class:
            return {"voc/mAP50": 0.0, "voc/mAP75": 0.0, "voc/mAP": 0.0}
        table = np.stack(list(per_class.values()))  # [C, T]
        metrics = {"voc/mAP50": float(table[:, 0].mean()), "voc/mAP75": float(table[:, 5].mean()),
                   "voc/mAP": float(table.mean())}
        if self.per_class:
            metrics.update({f"voc/AP50_{name}": float(aps[0]) for name, aps in per_class.items()})
        return metrics


def build_voc_evaluator(cfg: VocEvaluatorConfig, *, dataset: Any, task: str,
                        registry: Registry | None = None) -> VocEvaluator:
    """Evaluator factory (boxes only; ``task`` is not used)."""
    del task
    return VocEvaluator(dataset, use_07_metric=cfg.use_07_metric, per_class=cfg.per_class)
