"""Small synthetic inputs for the conformance suites: feature maps and batches with every target field."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from lsvr_core.contracts import ShapeSpec
from lsvr_core.fields import TargetFieldSpec
from lsvr_core.structures import NUM_KEYPOINTS, Batch, Targets


def feature_size(image_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Expected (H, W) of a stride-``stride`` level for a (padded) input of ``image_size``: ``ceil(size / s)``
    (what stride-2 convs with padding k // 2 and ceil-mode pooling produce)."""
    return math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride)


def make_features(input_shape: dict[str, ShapeSpec], image_size: tuple[int, int], batch_size: int = 2,
                  requires_grad: bool = False, seed: int = 0) -> dict[str, Tensor]:
    """Random feature maps ``{level: (B, C, ceil(H / s), ceil(W / s))}`` float32 matching ``input_shape``."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for level, spec in input_shape.items():
        h, w = feature_size(image_size, spec.stride)
        out[level] = torch.randn(batch_size, spec.channels, h, w, generator=gen).requires_grad_(requires_grad)
    return out


def make_targets(boxes: Tensor, labels: Tensor, image_size: tuple[int, int], image_id: int = 0,
                 iscrowd: Tensor | None = None, seed: int = 0,
                 extra_fields: Sequence[TargetFieldSpec] = ()) -> Targets:
    """:class:`Targets` with every field filled consistently from rectangular instances.

    Args:
        boxes: (N, 4) float32 xyxy pixels inside ``image_size``.
        labels: (N,) int64.
        image_size: (H, W) pixels; the original size equals it (scale 1, not flipped).
        extra_fields: declared fields to fill in ``extras`` with their ``derive`` function (e.g. a plugin's
            own per-instance field); a field without one raises ConfigError.
    Returns:
        Targets whose masks, polygons, keypoints (17, visibility 2, random points inside each box) and
        things-only ``semantic`` map (label + 1 inside the boxes) describe the rectangles, plus the derived
        ``extra_fields``.
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = image_size
    n = len(boxes)
    masks = torch.zeros(n, h, w, dtype=torch.uint8)
    polygons = []
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        masks[i, int(y0):math.ceil(y1), int(x0):math.ceil(x1)] = 1
        polygons.append([np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)])
    rand = torch.rand(n, NUM_KEYPOINTS, 2, generator=gen)
    keypoints = torch.zeros(n, NUM_KEYPOINTS, 3)
    keypoints[..., 0] = boxes[:, None, 0] + rand[..., 0] * (boxes[:, None, 2] - boxes[:, None, 0])
    keypoints[..., 1] = boxes[:, None, 1] + rand[..., 1] * (boxes[:, None, 3] - boxes[:, None, 1])
    keypoints[..., 2] = 2
    semantic = torch.zeros(h, w, dtype=torch.uint8)  # things-only map: label + 1 inside each box, 0 elsewhere
    for i in range(n):
        semantic[masks[i].bool()] = int(labels[i]) + 1
    targets = Targets(
        boxes=boxes.float(), labels=labels.long(), image_id=image_id, orig_size=image_size, image_size=image_size,
        iscrowd=iscrowd if iscrowd is not None else torch.zeros(n, dtype=torch.bool),
        polygons=polygons, masks=masks, keypoints=keypoints, ann_ids=torch.arange(n, dtype=torch.int64),
        semantic=semantic,
    )
    for spec in extra_fields:
        targets.extras.add(spec, spec.derive_fn()(targets))
    return targets


def make_batch(image_size: tuple[int, int] = (96, 128), num_classes: int = 3, seed: int = 0,
               extra_fields: Sequence[TargetFieldSpec] = ()) -> Batch:
    """A two-image batch, images (2, 3, H, W) float32 in [0, 255].

    Image 0 (id 1) has three boxes of different scales, one of them a crowd box; image 1 (id 2) has no
    instances and is smaller than the padded size (its ``image_size`` is 3/4 of the width, the rest is
    zero padding), so heads see both an empty image and padding. ``extra_fields`` as in :func:`make_targets`.
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = image_size
    images = torch.rand(2, 3, h, w, generator=gen) * 255
    boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.45 * w, 0.6 * h],
                          [0.4 * w, 0.2 * h, 0.95 * w, 0.95 * h],
                          [0.6 * w, 0.05 * h, 0.7 * w, 0.2 * h]])
    labels = torch.tensor([0, num_classes - 1, 1 % num_classes])
    t0 = make_targets(boxes, labels, image_size, image_id=1, iscrowd=torch.tensor([False, False, True]), seed=seed,
                      extra_fields=extra_fields)
    small = (h, (3 * w) // 4)
    images[1, :, :, small[1]:] = 0
    t1 = make_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), small, image_id=2, seed=seed,
                      extra_fields=extra_fields)
    return Batch(images, [t0, t1])
