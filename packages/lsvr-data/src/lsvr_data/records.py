"""Parsed annotations of one image (original frame, no pixels) and the bad-annotation bookkeeping.

Torch-free and cheap to pickle, so datasets can be copied into DataLoader workers.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsvr_core.api import DataError

log = logging.getLogger("lsvr_data")


@dataclass
class ImageRecord:
    """One image's annotations in the file's pixel grid.

    Attributes:
        image_id: the dataset's image id (COCO ``id``; VOC: the index in the concatenated list).
        file: image path (None for generated images).
        height, width: pixels, from the annotation file.
        boxes: (N, 4) float32 xyxy pixels.
        labels: (N,) int64 contiguous labels.
        iscrowd: (N,) bool.
        ann_ids: (N,) int64 annotation ids (-1 when the format has none).
        segms: per instance: list of polygons (flat xy lists), an RLE dict, or None (boxes only).
        keypoints: (N, 17, 3) float32 or None.
        difficult: (N,) bool or None (VOC).
        extreme_points: (N, 4, 2) float32 read from the file (gen_coco_lsvr output) or None.
        source: the annotation file, for error messages.
    """

    image_id: int
    file: Path | None
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    iscrowd: np.ndarray
    ann_ids: np.ndarray
    segms: list[Any] | None = None
    keypoints: np.ndarray | None = None
    difficult: np.ndarray | None = None
    extreme_points: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def num_non_crowd(self) -> int:
        return int((~self.iscrowd).sum())


@dataclass
class BadAnnotations:
    """Applies the ``on_bad_annotation`` policy: raise a :class:`DataError` or count, remember and log.

    Attributes:
        policy: ``"error"`` or ``"skip"``.
        skipped: (file, annotation id, reason) of every skipped annotation or polygon component.
    """

    policy: str = "skip"
    skipped: list[tuple[str, int | str, str]] = field(default_factory=list)

    def report(self, source: str, ann_id: int | str, reason: str) -> None:
        """Handle one bad annotation.

        Raises:
            DataError: when the policy is ``"error"``; the message names the file and the annotation id.
        """
        if self.policy == "error":
            raise DataError(f"{source}: annotation {ann_id}: {reason} (set on_bad_annotation: skip to skip it)")
        self.skipped.append((source, ann_id, reason))
        log.debug("%s: skipped annotation %s: %s", source, ann_id, reason)

    def reason_counts(self) -> str:
        """The skipped annotations counted by kind of reason, e.g. ``2 x degenerate bbox, 1 x unknown category_id``."""
        counts: dict[str, int] = {}
        for _, _, reason in self.skipped:
            kind = re.split(r"[\[(]|\s-?\d|\s'", reason, maxsplit=1)[0].strip() or reason
            counts[kind] = counts.get(kind, 0) + 1
        return ", ".join(f"{n} x {kind}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))

    def log_summary(self, name: str) -> None:
        """One warning with the count and the first few (annotation id, reason) pairs."""
        if not self.skipped:
            return
        first = "; ".join(f"id {a}: {r}" for _, a, r in self.skipped[:5])
        more = f" (and {len(self.skipped) - 5} more)" if len(self.skipped) > 5 else ""
        log.warning("%s: skipped %d bad annotation(s) in %s (%s): %s%s", name, len(self.skipped),
                    self.skipped[0][0], self.reason_counts(), first, more)


def check_box(x: float, y: float, w: float, h: float, img_w: int, img_h: int) -> str | None:
    """Why a COCO xywh box is unusable (mmdet's rules, LSNet spec §7.2), or None if it is fine."""
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f"non-finite bbox {[x, y, w, h]}"
    if w < 1 or h < 1:
        return f"degenerate bbox {[x, y, w, h]} (w or h < 1 px)"
    inter_w = max(0.0, min(x + w, img_w) - max(x, 0.0))
    inter_h = max(0.0, min(y + h, img_h) - max(y, 0.0))
    if inter_w * inter_h <= 0:
        return f"bbox {[x, y, w, h]} lies outside the {img_w}x{img_h} image"
    return None


def check_polygon(component: Any) -> str | None:
    """Why a COCO polygon component (flat xy list) is unusable, or None."""
    if not isinstance(component, list | tuple):
        return f"polygon component is a {type(component).__name__}, not a list"
    if len(component) < 6 or len(component) % 2:
        return f"polygon component with {len(component)} coordinates (need an even number >= 6)"
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in component):
        return "polygon component with non-numeric or non-finite coordinates"
    return None


def group_by_image(annotations: list[dict], key: str = "image_id") -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for ann in annotations:
        out.setdefault(ann.get(key), []).append(ann)
    return out
