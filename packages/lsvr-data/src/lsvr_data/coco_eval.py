"""The ``coco`` evaluator: pycocotools COCOeval for bbox, segm and keypoints over original-frame predictions.

Predictions carry contiguous labels; they are mapped back to category ids with the dataset's
``label_to_cat_id``. Only the image ids the evaluator saw (through :meth:`CocoEvaluator.process`, possibly with
zero detections, or :meth:`CocoEvaluator.register_image_ids`) are scored. Predictions become COCO results
records through core's one results writer (``lsvr_core.api.predictions_to_results``, also used by
``lsvr predict``): segmentations from masks or contours as RLE, keypoints (N, 17, 3).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from lsvr_core.api import DataError, Predictions, Registry, predictions_to_results
from lsvr_data import coco_backends
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
                 backend: str = "pycocotools", backend_gt: Any = None) -> tuple[dict[str, float], Any]:
    """Run COCOeval quietly with one of the :mod:`lsvr_data.coco_backends`.

    Args:
        coco_gt: pycocotools ``COCO`` ground truth (its ``dataset`` dict feeds the other backends).
        results: COCO result dicts, or the path of a results JSON.
        iou_type: ``bbox``, ``segm`` or ``keypoints``.
        img_ids: restrict scoring to these image ids (default: all of ``coco_gt``).
        backend: ``auto``, ``pycocotools``, ``faster_coco_eval`` or ``hotcoco`` (identical stats).
        backend_gt: the backend's ground truth built once by :func:`lsvr_data.coco_backends.load_gt` (optional
            cache; built from ``coco_gt`` when None).
    Returns:
        ({stat name: value}, the COCOeval object, or None when there were no results: then every stat is 0).
    """
    names = stat_names(iou_type)
    if isinstance(results, list) and not results:
        return {n: 0.0 for n in names}, None
    backend = coco_backends.resolve_backend(backend)
    if backend_gt is None:
        backend_gt = coco_gt if backend == "pycocotools" else coco_backends.load_gt(coco_gt.dataset, backend)
    stats, ev = coco_backends.evaluate(backend_gt, results, iou_type, backend, img_ids)
    log.debug("COCOeval %s (%s): %s", iou_type, backend, stats)
    return {n: float(v) for n, v in zip(names, stats, strict=True)}, ev


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


class CocoEvaluator:
    """Accumulate predictions, then COCOeval per iou type.

    Args:
        coco_gt: pycocotools ``COCO`` ground truth (the dataset's ``coco_gt()``).
        label_to_cat_id: contiguous label -> COCO category id.
        iou_types: subset of ``bbox``, ``segm``, ``keypoints``.
        class_names: names for per-class keys (``<iou_type>/AP_<name>``), when ``per_class``.
        backend: COCOeval implementation (:mod:`lsvr_data.coco_backends`; ``auto`` = fastest installed).
    """

    def __init__(self, coco_gt: Any, label_to_cat_id: Sequence[int], iou_types: Sequence[str], *,
                 class_names: Sequence[str] | None = None, per_class: bool = False, max_dets: int = 100,
                 backend: str = "auto") -> None:
        self.coco_gt = coco_gt
        self.label_to_cat_id = list(label_to_cat_id)
        self.iou_types = list(iou_types)
        self.class_names = list(class_names) if class_names else [str(c) for c in self.label_to_cat_id]
        self.per_class = per_class
        self.max_dets = max_dets
        self.backend = coco_backends.resolve_backend(backend)
        self._backend_gt: Any = None  # built on first evaluate, reused by later evaluations
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
            self.results.extend(predictions_to_results(
                pred, (int(info["height"]), int(info["width"])), category_ids=self.label_to_cat_id,
                iou_types=self.iou_types, max_dets=self.max_dets))

    def evaluate(self) -> dict[str, float]:
        """``{"<iou_type>/<stat>": value}`` over the processed images (stats are 0 with no detections)."""
        metrics: dict[str, float] = {}
        if not self.image_ids:
            log.warning("coco evaluator: no image was processed; returning no metrics")
            return metrics
        for iou_type in self.iou_types:
            if self._backend_gt is None:
                self._backend_gt = (self.coco_gt if self.backend == "pycocotools"
                                    else coco_backends.load_gt(self.coco_gt.dataset, self.backend))
            stats, ev = run_cocoeval(self.coco_gt, self.results, iou_type, sorted(self.image_ids),
                                     backend=self.backend, backend_gt=self._backend_gt)
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
                         max_dets=cfg.max_dets, backend=cfg.backend)
