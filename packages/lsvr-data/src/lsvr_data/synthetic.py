"""The ``synthetic`` dataset: seeded, procedurally drawn shapes on textured backgrounds (no files needed).

Four classes (rectangle, ellipse, triangle, star; each with its own saturated hue, jittered) on greyish
textured backgrounds, 1..``max_objects`` non-overlapping objects per image with sides 12-60 % of the image
side. Each object has a polygon (COCO segmentation), a tight box and 17
keypoint-like landmarks laid out like a COCO person (nose on top, left/right pairs mirrored about the
object's vertical axis, "left" on the image right as for a person facing the camera), so pose heads and the
keypoint flip pairs work. Everything about image ``i`` is a function of ``(seed, split, i)`` only.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from lsvr_core.api import Registry, TargetFieldSpec
from lsvr_data.base import DetectionDataset, resolve_extra_fields
from lsvr_data.coco import quiet_coco
from lsvr_data.config import SyntheticDatasetConfig
from lsvr_data.landmarks import signed_area
from lsvr_data.records import ImageRecord

CLASSES = ("rectangle", "ellipse", "triangle", "star")
KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")
# (u, v) in half-box units from the box centre; odd indices ("left") at +u, even ("right") at -u.
_PAIRS = ((0.15, -0.9), (0.3, -0.8), (0.5, -0.45), (0.75, -0.1), (0.9, 0.2), (0.3, 0.2), (0.35, 0.55), (0.4, 0.9))
KEYPOINT_LAYOUT = np.array([(0.0, -0.75)] + [p for u, v in _PAIRS for p in ((u, v), (-u, v))], dtype=np.float64)
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
            [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # COCO's, 1-based
_SPLIT_ID = {"train": 0, "val": 1}
_CLASS_HUES = (0.0, 0.33, 0.6, 0.14)  # red rectangles, green ellipses, blue triangles, yellow stars


def shape_polygon(kind: int, cx: float, cy: float, w: float, h: float) -> np.ndarray:
    """(P, 2) polygon of shape ``kind`` inscribed in the w x h box centred at (cx, cy), clockwise on screen."""
    if kind == 0:  # rectangle
        unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    elif kind == 1:  # ellipse
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        unit = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif kind == 2:  # upright isosceles triangle
        unit = np.array([[0, -1], [1, 1], [-1, 1]], dtype=np.float64)
    else:  # five-pointed star, tip up, stretched to fill the box
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        unit = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
        lo, hi = unit.min(axis=0), unit.max(axis=0)
        unit = (unit - (lo + hi) / 2) / ((hi - lo) / 2)
    return unit * [w / 2, h / 2] + [cx, cy]


def layout(seed: int, split: str, index: int, size: int, max_objects: int) -> list[tuple[int, np.ndarray]]:
    """The objects of one image: [(class index, polygon (P, 2))], boxes pairwise disjoint (2 px apart)."""
    rng = np.random.default_rng([seed, _SPLIT_ID[split], index, 0])
    wanted = int(rng.integers(1, max_objects + 1))
    lo, hi = 0.12 * size, 0.6 * size
    objects: list[tuple[int, np.ndarray]] = []
    boxes: list[np.ndarray] = []
    for _ in range(40 * wanted):
        if len(objects) == wanted:
            break
        kind = int(rng.integers(len(CLASSES)))
        side = rng.uniform(lo, hi)
        aspect = math.sqrt(rng.uniform(0.6, 1.6))
        w, h = float(np.clip(side * aspect, lo, hi)), float(np.clip(side / aspect, lo, hi))
        x1, y1 = rng.uniform(1, size - w - 1), rng.uniform(1, size - h - 1)
        box = np.array([x1, y1, x1 + w, y1 + h])
        if any(box[0] < b[2] + 2 and b[0] < box[2] + 2 and box[1] < b[3] + 2 and b[1] < box[3] + 2 for b in boxes):
            continue
        boxes.append(box)
        objects.append((kind, shape_polygon(kind, x1 + w / 2, y1 + h / 2, w, h)))
    return objects


def render(seed: int, split: str, index: int, size: int, objects: list[tuple[int, np.ndarray]]) -> Tensor:
    """Draw a low-saturation textured background and the filled objects -> (3, size, size) uint8.

    Objects are saturated colours whose hue depends on the class (with jitter), so class and shape agree: the
    set is meant to be learnable in a few CPU minutes, not to be hard.
    """
    rng = np.random.default_rng([seed, _SPLIT_ID[split], index, 1])
    base = rng.uniform(60, 200) + rng.uniform(-15, 15, size=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = int(rng.integers(3))
    amplitude = rng.uniform(8, 25)
    if texture == 0:  # smooth blotches: a coarse random grid, bilinearly upsampled
        coarse = torch.from_numpy(rng.normal(0, amplitude, size=(1, 1, 6, 6)).astype(np.float32))
        pattern = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        bg = base[:, None, None] + pattern[0].numpy()
    elif texture == 1:  # stripes
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 20)
        wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        bg = base[:, None, None] + amplitude * wave
    else:  # checkerboard
        cell = int(rng.integers(6, 20))
        bg = base[:, None, None] + amplitude * (((xx // cell + yy // cell) % 2) * 2 - 1)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8).transpose(1, 2, 0))
    draw = ImageDraw.Draw(img)
    for kind, poly in objects:
        hue = (_CLASS_HUES[kind] + rng.uniform(-0.04, 0.04)) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.65, 1.0))
        draw.polygon([tuple(p) for p in poly], fill=tuple(int(255 * c) for c in rgb))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, size=(size, size, 3))
    return torch.from_numpy(np.clip(arr, 0, 255).round().astype(np.uint8).transpose(2, 0, 1).copy())


class SyntheticDataset(DetectionDataset):
    """Generated shapes; supports every task (keypoints are the 17 shape landmarks) and the coco evaluator.

    Image ids are ``index + 1``; annotation ids count from 1 in image order.
    """

    name = "synthetic"

    def __init__(self, cfg: SyntheticDatasetConfig, *, train: bool, task: str,
                 extra_fields: tuple[TargetFieldSpec, ...] = ()) -> None:
        self.cfg = cfg
        size = cfg.image_size
        self._objects = [layout(cfg.seed, cfg.split, i, size, cfg.max_objects) for i in range(cfg.num_images)]
        records, ann_id = [], 1
        for i, objects in enumerate(self._objects):
            n = len(objects)
            polys = [p for _, p in objects]
            boxes = np.array([[*p.min(axis=0), *p.max(axis=0)] for p in polys], dtype=np.float32).reshape(n, 4)
            kps = np.zeros((n, 17, 3), dtype=np.float32)
            for j, b in enumerate(boxes):
                centre, half = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]) / 2
                kps[j, :, :2] = centre + KEYPOINT_LAYOUT * half
                kps[j, :, 2] = 2
            records.append(ImageRecord(
                image_id=i + 1, file=None, height=size, width=size, boxes=boxes,
                labels=np.array([k for k, _ in objects], dtype=np.int64), iscrowd=np.zeros(n, dtype=bool),
                ann_ids=np.arange(ann_id, ann_id + n, dtype=np.int64),
                segms=[[p.reshape(-1).tolist()] for p in polys], keypoints=kps, source=f"synthetic/{cfg.split}",
            ))
            ann_id += n
        self.label_to_cat_id = list(range(1, len(CLASSES) + 1))
        super().__init__(records, list(CLASSES), cfg.pipeline, train=train, task=task, landmarks=cfg.landmarks,
                         with_masks=cfg.with_masks, aug_seed=cfg.aug_seed, extra_fields=extra_fields)
        self._coco_gt: Any = None

    def load_image(self, record: ImageRecord) -> Tensor:
        i = record.image_id - 1
        return render(self.cfg.seed, self.cfg.split, i, self.cfg.image_size, self._objects[i])

    def coco_gt_dict(self) -> dict:
        """The ground truth as a COCO-format dict (boxes, polygons, areas, 17 keypoints per object)."""
        anns = []
        for rec in self.records:
            for j in range(len(rec)):
                x1, y1, x2, y2 = (float(v) for v in rec.boxes[j])
                poly = np.asarray(rec.segms[j][0]).reshape(-1, 2)
                anns.append({
                    "id": int(rec.ann_ids[j]), "image_id": rec.image_id, "category_id": int(rec.labels[j]) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": abs(signed_area(poly)), "iscrowd": 0,
                    "segmentation": rec.segms[j], "keypoints": rec.keypoints[j].reshape(-1).tolist(),
                    "num_keypoints": 17,
                })
        return {
            "info": {"description": f"lsvr synthetic shapes, split {self.cfg.split}, seed {self.cfg.seed}"},
            "images": [{"id": r.image_id, "width": r.width, "height": r.height, "file_name": f"{r.image_id}.png"}
                       for r in self.records],
            "annotations": anns,
            "categories": [{"id": i + 1, "name": n, "supercategory": "shape", "keypoints": list(KEYPOINT_NAMES),
                            "skeleton": SKELETON} for i, n in enumerate(CLASSES)],
        }

    def coco_gt(self) -> Any:
        """The ground truth as a pycocotools ``COCO`` (built once)."""
        if self._coco_gt is None:
            self._coco_gt = quiet_coco(self.coco_gt_dict())
        return self._coco_gt


def build_synthetic(cfg: SyntheticDatasetConfig, *, root: Path, train: bool, task: str,
                    registry: Registry | None = None, annotations: bool = True) -> SyntheticDataset:
    """Dataset factory (``root`` and ``annotations`` are unused: nothing is read from disk)."""
    del root, annotations
    extra_fields = resolve_extra_fields(cfg.extra_fields, registry, cfg.type)
    return SyntheticDataset(cfg, train=train, task=task, extra_fields=extra_fields)
