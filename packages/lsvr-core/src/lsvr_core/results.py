"""The one results writer: original-frame :class:`~lsvr_core.structures.Predictions` -> COCO results records.

Used by the ``coco`` evaluator (lsvr-data) and by ``lsvr predict``, so both write the same records for the
same predictions. A record is the COCO results format (cocodataset.org/#format-results)::

    {"image_id": int, "category_id": int, "bbox": [x, y, w, h] (pixels, original frame), "score": float,
     "segmentation": {"size": [H, W], "counts": str} (compressed RLE),        # when written
     "keypoints": [x1, y1, s1, ..., x17, y17, s17]}                          # when written

Segmentations come from ``Predictions.masks`` (probabilities >= 0.5, or bool) or, failing that, from
``Predictions.contours`` (closed polygons rasterised by pycocotools at the original size, LSNet spec §6 step
6). Keypoints come from ``Predictions.keypoints`` (N, 17, 3) (x, y, per-keypoint score); COCOeval scores a
keypoints record by its ``score`` (the box score).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from lsvr_core.errors import DataError
from lsvr_core.structures import Predictions

IOU_TYPES = ("bbox", "segm", "keypoints")


def predictions_to_results(pred: Predictions, image_hw: tuple[int, int], *,
                           category_ids: Sequence[int] | None = None, iou_types: Iterable[str] | None = None,
                           max_dets: int | None = None) -> list[dict[str, Any]]:
    """COCO results records of one image's original-frame predictions, highest score first.

    Args:
        pred: predictions after :meth:`Predictions.to_original`.
        image_hw: (H, W) of the image file, pixels (the RLE size).
        category_ids: contiguous label -> category id (``label_to_cat_id``); None writes ``label + 1``.
        iou_types: what to write: ``bbox`` is always written, ``segm`` adds ``segmentation``, ``keypoints`` adds
            ``keypoints``; each requested one must be available. None writes whatever the predictions hold
            (``lsvr predict``).
        max_dets: keep the ``max_dets`` highest-scoring detections (None: all).
    Returns:
        One dict per kept detection (plain Python floats / ints, JSON-serialisable).
    Raises:
        DataError: the predictions are in the input frame, or a requested iou type needs a field they lack
            (segm: masks or contours; keypoints: keypoints).
    """
    if pred.frame != "original":
        raise DataError(f"image {pred.image_id}: results need original-frame predictions "
                        "(call Predictions.to_original first)")
    has_segm = pred.masks is not None or pred.contours is not None
    wanted = set(iou_types) if iou_types is not None else {
        "bbox", *(["segm"] if has_segm else []), *(["keypoints"] if pred.keypoints is not None else [])}
    if "segm" in wanted and not has_segm:
        raise DataError(f"image {pred.image_id}: segm results need Predictions.masks or Predictions.contours")
    if "keypoints" in wanted and pred.keypoints is None:
        raise DataError(f"image {pred.image_id}: keypoints results need Predictions.keypoints")
    if len(pred) == 0:
        return []
    order = pred.scores.detach().float().cpu().argsort(descending=True, stable=True)
    if max_dets is not None:
        order = order[:max_dets]
    boxes = pred.boxes.detach().float().cpu()[order].numpy()
    scores = pred.scores.detach().float().cpu()[order].numpy()
    labels = pred.labels.detach().cpu()[order].numpy()
    rles = segmentation_rles(pred, order.numpy(), image_hw) if "segm" in wanted else None
    kps = pred.keypoints.detach().float().cpu()[order].numpy() if "keypoints" in wanted else None
    results = []
    for i in range(len(order)):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        label = int(labels[i])
        rec: dict[str, Any] = {"image_id": int(pred.image_id),
                               "category_id": int(category_ids[label]) if category_ids is not None else label + 1,
                               "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[i])}
        if rles is not None:
            rec["segmentation"] = rles[i]
        if kps is not None:
            rec["keypoints"] = [float(v) for v in kps[i].reshape(-1)]
        results.append(rec)
    return results


def segmentation_rles(pred: Predictions, order: np.ndarray, image_hw: tuple[int, int]) -> list[dict[str, Any]]:
    """Compressed RLEs (``counts`` as ASCII) of ``pred``'s masks, or else contours, in ``order``.

    Args:
        pred: original-frame predictions with ``masks`` (N, H, W) or ``contours`` (N, P, 2).
        order: indices of the detections to encode.
        image_hw: (H, W) of the RLEs (contours are rasterised at this size; masks must already have it).
    """
    h, w = image_hw
    if pred.masks is not None:
        masks = pred.masks.detach().cpu()[torch.as_tensor(order, dtype=torch.long)]
        masks = masks if masks.dtype == torch.bool else masks >= 0.5
        if len(masks) and tuple(masks.shape[-2:]) != (h, w):
            raise DataError(f"image {pred.image_id}: masks are {tuple(masks.shape[-2:])}, the image {(h, w)}")
        arr = np.asfortranarray(masks.numpy().astype(np.uint8).transpose(1, 2, 0))
        rles = list(mask_utils.encode(arr)) if len(order) else []
    else:
        assert pred.contours is not None
        polys = pred.contours.detach().float().cpu().numpy()[order].reshape(len(order), -1)
        rles = [mask_utils.merge(mask_utils.frPyObjects([p.astype(np.float64).tolist()], h, w)) for p in polys]
    return [{"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in rles]
