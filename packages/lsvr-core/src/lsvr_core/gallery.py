"""The evaluation gallery: ground truth beside predictions for a fixed set of val images, one PNG per step.

Each row is one image at a readable size (shorter side scaled up to ``min_side`` pixels, at most ``max_scale``
times): on the left the ground truth the dataset keeps (boxes, masks or polygons, keypoints), on the right the
predictions above the score threshold. Drawing uses torchvision's ``draw_bounding_boxes`` /
``draw_segmentation_masks`` / ``draw_keypoints`` through :mod:`lsvr_core.visualize`, with captions outside
the boxes they name.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsvr_core.structures import Predictions, Targets
from lsvr_core.visualize import draw_predictions, resize_to, save_png


def ground_truth_as_predictions(meta: Targets) -> Predictions:
    """The non-crowd ground truth of one image as input-frame :class:`Predictions` (score 1) for drawing.

    Polygons are rasterised to masks at ``meta.image_size`` (Pillow) when no masks are loaded; keypoints keep
    their visibility as the score (0 = not drawn).
    """
    gt = meta.non_crowd()
    n = len(gt)
    masks = gt.masks.float() if gt.masks is not None else None
    if masks is None and gt.polygons is not None and n:
        masks = _rasterise(gt.polygons, meta.image_size)
    keypoints = gt.keypoints.clone().float() if gt.keypoints is not None else None
    return Predictions(boxes=gt.boxes.float(), scores=torch.ones(n), labels=gt.labels, image_id=meta.image_id,
                       masks=masks, keypoints=keypoints)


def _rasterise(polygons: list[list[Any]], size: tuple[int, int]) -> Tensor:
    import numpy as np
    from PIL import Image, ImageDraw

    h, w = size
    out = torch.zeros((len(polygons), h, w), dtype=torch.float32)
    for i, parts in enumerate(polygons):
        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        for part in parts:
            pts = [(float(x), float(y)) for x, y in np.asarray(part).reshape(-1, 2)]
            if len(pts) >= 3:
                draw.polygon(pts, fill=1)
        out[i] = torch.from_numpy(np.array(canvas, dtype=np.float32))
    return out


def display_scale(orig_size: tuple[int, int], min_side: int = 480, max_scale: float = 4.0) -> float:
    """Factor that brings the shorter side to ``min_side`` pixels (never below 1, at most ``max_scale``)."""
    return float(min(max(min_side / min(orig_size), 1.0), max_scale))


def to_display(pred: Predictions, orig_size: tuple[int, int], factor: float, image_id: int) -> Predictions:
    """Original-frame predictions scaled by ``factor`` (boxes, points, keypoints; masks resized)."""
    oh, ow = orig_size
    meta = Targets(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long), image_id=image_id,
                   orig_size=(round(oh * factor), round(ow * factor)), image_size=(oh, ow),
                   scale=(1 / factor, 1 / factor))
    return replace(pred, frame="input").to_original(meta)


def draw_gallery(dataset: Any, predictions: list[tuple[int, Predictions]], *, num: int, out_path: Path,
                 class_names: list[str] | None, score_thresh: float = 0.3) -> Path | None:
    """Write one PNG: a row per image (the first ``num`` val images), ground truth | predictions.

    Args:
        dataset: the val dataset (``dataset[i] -> (image (3, H, W) uint8, Targets)``, input frame).
        predictions: (dataset index, original-frame Predictions), in dataset order.
    Returns:
        The PNG path, or None when there is nothing to draw.
    """
    rows = []
    for index, pred in predictions[:num]:
        image, meta = dataset[index]
        if image.dtype != torch.uint8:
            image = image.clamp(0, 255).to(torch.uint8)
        if meta.flipped:
            image = image.flip(-1)
        orig = tuple(int(v) for v in meta.orig_size)
        factor = display_scale(orig)
        size = (round(orig[0] * factor), round(orig[1] * factor))
        canvas = resize_to(resize_to(image, orig), size)
        gt = ground_truth_as_predictions(meta).to_original(meta)
        left = draw_predictions(canvas, to_display(gt, orig, factor, meta.image_id), class_names, score_thresh=0.0)
        right = draw_predictions(canvas, to_display(pred, orig, factor, meta.image_id), class_names, score_thresh)
        gap = torch.full((3, size[0], 8), 255, dtype=torch.uint8)
        rows.append(torch.cat([left, gap, right], dim=2))
    if not rows:
        return None
    width = max(r.shape[2] for r in rows)
    padded = [torch.nn.functional.pad(r, (0, width - r.shape[2], 0, 8), value=255) for r in rows]
    return save_png(torch.cat(padded, dim=1), out_path)
