"""The ``coco`` evaluator: pycocotools COCOeval for bbox, segm and keypoints over original-frame predictions.

Predictions carry contiguous labels; they are mapped back to category ids with the dataset's
``label_to_cat_id``. Only the image ids the evaluator saw (through :meth:`CocoEvaluator.process`, possibly with
zero detections, or :meth:`CocoEvaluator.register_image_ids`) are scored. Segmentations come from
``Predictions.masks`` (probabilities >= 0.5, or bool) or, failing that, ``Predictions.contours`` (polygon ->
RLE at the original size, LSNet spec §6 step 6). Keypoints from ``Predictions.keypoints`` (N, 17, 3), scored
with the box score.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from lsvr_core.api import DataError, Predictions, Registry
from pycocotools import mask as mask_utils

from lsvr_data.config import CocoEvaluatorConfig

log = logging.getLogger("lsvr_data")

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
DEFAULT_IOU_TYPES = {"bbox": ["bbox"], "segm": ["bbox", "segm"], "pose_bbox": ["bbox", "keypoints"],
                     "pose_kbox": ["bbox", "keypoints"]}


def stat_names(iou_type: str) -> tuple[str, ...]:
    """Names of COCOeval's ``stats`` entries for an iou type (keypoints have 10, the others 12)."""
    return KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES


def run_cocoeval(coco_gt: Any, results: list[dict] | str, iou_type: str, img_ids: Sequence[int] | None = None,
                 ) -> tuple[dict[str, float], Any]:
    """Run COCOeval quietly.

    Args:
        coco_gt: pycocotools ``COCO`` ground truth.
        results: COCO result dicts, or the path of a results JSON.
        iou_type: ``bbox``, ``segm`` or ``keypoints``.
        img_ids: restrict scoring to these image ids (default: all of ``coco_gt``).
    Returns:
        ({stat name: value}, the COCOeval object, or None when there were no results: then every stat is 0).
    """
    from pycocotools.cocoeval import COCOeval

    names = stat_names(iou_type)
    if isinstance(results, list) and not results:
        return {n: 0.0 for n in names}, None
    with contextlib.redirect_stdout(io.StringIO()) as out:
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if img_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log.debug("COCOeval %s:\n%s", iou_type, out.getvalue())
    return {n: float(v) for n, v in zip(names, ev.stats, strict=True)}, ev


def per_class_ap(ev: Any, class_names: Sequence[str], label_to_cat_id: Sequence[int]) -> dict[str, float]:
    """AP@[.5:.95] per class from ``ev.eval['precision']`` (area 'all', the largest maxDets); -1 if no GT."""
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    cat_pos = {c: k for k, c in enumerate(ev.params.catIds)}
    out = {}
    for label, cat_id in enumerate(label_to_cat_id):
        k = cat_pos.get(cat_id)
        p = precision[:, :, k, 0, -1] if k is not None else np.array([-1.0])
        p = p[p > -1]
        out[class_names[label]] = float(p.mean()) if p.size else -1.0
    return out


def predictions_to_results(pred: Predictions, label_to_cat_id: Sequence[int], iou_types: Iterable[str],
                           image_hw: tuple[int, int], max_dets: int = 100) -> list[dict]:
    """COCO result dicts of one image's original-frame predictions.

    Raises:
        DataError: an iou type needs a field the predictions lack (segm: masks or contours; keypoints).
    """
    if pred.frame != "original":
        raise DataError(f"image {pred.image_id}: the coco evaluator needs original-frame predictions "
                        "(call Predictions.to_original first)")
    n = len(pred)
    if n == 0:
        return []
    order = pred.scores.detach().float().cpu().argsort(descending=True)[:max_dets]
    boxes = pred.boxes.detach().float().cpu()[order].numpy()
    scores = pred.scores.detach().float().cpu()[order].numpy()
    labels = pred.labels.detach().cpu()[order].numpy()
    iou_types = set(iou_types)
    rles = _segmentations(pred, order.numpy(), image_hw) if "segm" in iou_types else None
    kps = None
    if "keypoints" in iou_types:
        if pred.keypoints is None:
            raise DataError(f"image {pred.image_id}: keypoints evaluation needs Predictions.keypoints")
        kps = pred.keypoints.detach().float().cpu()[order].numpy()
    results = []
    for i in range(len(order)):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        res = {"image_id": int(pred.image_id), "category_id": int(label_to_cat_id[int(labels[i])]),
               "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[i])}
        if rles is not None:
            res["segmentation"] = rles[i]
        if kps is not None:
            k = kps[i].copy()
            k[:, 2] = scores[i]
            res["keypoints"] = [float(v) for v in k.reshape(-1)]
        results.append(res)
    return results


def _segmentations(pred: Predictions, order: np.ndarray, image_hw: tuple[int, int]) -> list[dict]:
    h, w = image_hw
    if pred.masks is not None:
        masks = pred.masks.detach().cpu()[order]
        masks = masks if masks.dtype == torch.bool else masks >= 0.5
        arr = np.asfortranarray(masks.numpy().astype(np.uint8).transpose(1, 2, 0))
        rles = mask_utils.encode(arr)
    elif pred.contours is not None:
        polys = pred.contours.detach().float().cpu()[order].numpy().reshape(len(order), -1)
        rles = [mask_utils.merge(mask_utils.frPyObjects([p.astype(np.float64).tolist()], h, w)) for p in polys]
    else:
        raise DataError(f"image {pred.image_id}: segm evaluation needs Predictions.masks or Predictions.contours")
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return list(rles)


class CocoEvaluator:
    """Accumulate predictions, then COCOeval per iou type.

    Args:
        coco_gt: pycocotools ``COCO`` ground truth (the dataset's ``coco_gt()``).
        label_to_cat_id: contiguous label -> COCO category id.
        iou_types: subset of ``bbox``, ``segm``, ``keypoints``.
        class_names: names for per-class keys (``<iou_type>/AP_<name>``), when ``per_class``.
    """

    def __init__(self, coco_gt: Any, label_to_cat_id: Sequence[int], iou_types: Sequence[str], *,
                 class_names: Sequence[str] | None = None, per_class: bool = False, max_dets: int = 100) -> None:
        self.coco_gt = coco_gt
        self.label_to_cat_id = list(label_to_cat_id)
        self.iou_types = list(iou_types)
        self.class_names = list(class_names) if class_names else [str(c) for c in self.label_to_cat_id]
        self.per_class = per_class
        self.max_dets = max_dets
        self.reset()

    def reset(self) -> None:
        self.results: list[dict] = []
        self.image_ids: set[int] = set()

    def register_image_ids(self, image_ids: Iterable[int]) -> None:
        """Score these images even if no prediction was processed for them."""
        self.image_ids.update(int(i) for i in image_ids)

    def process(self, predictions: list[Predictions]) -> None:
        """Convert one batch of original-frame predictions (one per image, possibly empty)."""
        for pred in predictions:
            image_id = int(pred.image_id)
            if image_id not in self.coco_gt.imgs:
                raise DataError(f"prediction for image id {image_id}, which the ground truth does not contain")
            self.image_ids.add(image_id)
            info = self.coco_gt.imgs[image_id]
            self.results.extend(predictions_to_results(pred, self.label_to_cat_id, self.iou_types,
                                                       (int(info["height"]), int(info["width"])), self.max_dets))

    def evaluate(self) -> dict[str, float]:
        """``{"<iou_type>/<stat>": value}`` over the processed images (stats are 0 with no detections)."""
        metrics: dict[str, float] = {}
        if not self.image_ids:
            log.warning("coco evaluator: no image was processed; returning no metrics")
            return metrics
        for iou_type in self.iou_types:
            stats, ev = run_cocoeval(self.coco_gt, self.results, iou_type, sorted(self.image_ids))
            metrics.update({f"{iou_type}/{k}": v for k, v in stats.items()})
            if self.per_class and ev is not None:
                for name, ap in per_class_ap(ev, self.class_names, self.label_to_cat_id).items():
                    metrics[f"{iou_type}/AP_{name}"] = ap
        return metrics


def build_coco_evaluator(cfg: CocoEvaluatorConfig, *, dataset: Any, task: str,
                         registry: Registry | None = None) -> CocoEvaluator:
    """Evaluator factory: needs ``dataset.coco_gt()`` and ``dataset.label_to_cat_id``.

    Raises:
        DataError: the dataset offers no COCO ground truth.
    """
    if not hasattr(dataset, "coco_gt") or not hasattr(dataset, "label_to_cat_id"):
        raise DataError(f"the coco evaluator needs a dataset with coco_gt() and label_to_cat_id; "
                        f"{type(dataset).__name__} has neither")
    iou_types = cfg.iou_types or DEFAULT_IOU_TYPES.get(task, ["bbox"])
    return CocoEvaluator(dataset.coco_gt(), dataset.label_to_cat_id, iou_types,
                         class_names=getattr(dataset, "classes", None), per_class=cfg.per_class,
                         max_dets=cfg.max_dets)
