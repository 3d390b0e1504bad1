"""The ``voc`` dataset: PASCAL VOC XML boxes with ``difficult`` flags, several (year, split) sets concatenated.

Boxes: VOC's 1-based inclusive pixel indices ``(xmin, ymin, xmax, ymax)`` become continuous xyxy pixels
``(xmin - 1, ymin - 1, xmax, ymax)`` (the covered pixel area), so IoU without "+1" equals the devkit's IoU.
Image ids are 1-based positions in the concatenated list. VOC has boxes only: with ``landmarks: true`` the
extreme points are the box border mid-points and the contour is the resampled box outline. Source:
MutualGuide spec §8 (VOC07+12).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from lsvr_core.api import DataError, Registry, TargetFieldSpec
from lsvr_data.base import DetectionDataset, check_task, resolve, resolve_extra_fields
from lsvr_data.coco import quiet_coco
from lsvr_data.config import VocDatasetConfig
from lsvr_data.records import BadAnnotations, ImageRecord, check_box

log = logging.getLogger("lsvr_data")

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def _text(node: ET.Element, path: str, xml: Path) -> str:
    found = node.find(path)
    if found is None or found.text is None:
        raise DataError(f"{xml}: missing <{path}>")
    return found.text.strip()


def parse_voc_xml(xml: Path, image_id: int, image: Path, bad: BadAnnotations, first_ann_id: int) -> ImageRecord:
    """One VOC XML file -> :class:`ImageRecord` (annotation ids are ``first_ann_id + object index``).

    Raises:
        DataError: the file is missing or malformed; a bad object under policy ``error`` (names file and object).
    """
    if not xml.is_file():
        raise DataError(f"annotation file not found: {xml}")
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as err:
        raise DataError(f"{xml} is not valid XML: {err}") from None
    try:
        width, height = int(float(_text(root, "size/width", xml))), int(float(_text(root, "size/height", xml)))
    except ValueError as err:
        raise DataError(f"{xml}: invalid <size>: {err}") from None
    boxes, labels, difficult, ann_ids = [], [], [], []
    for k, obj in enumerate(root.iter("object")):
        ann_id = f"{first_ann_id + k} (object #{k})"
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            bad.report(str(xml), ann_id, f"unknown class {name!r}")
            continue
        try:
            xmin, ymin, xmax, ymax = (float(_text(obj, f"bndbox/{t}", xml)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as err:
            bad.report(str(xml), ann_id, f"invalid bndbox: {err}")
            continue
        reason = check_box(xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1, width, height)
        flag = (obj.findtext("difficult") or "0").strip()
        if reason is None and flag not in ("0", "1"):
            reason = f"<difficult>{flag}</difficult> is not 0 or 1"
        if reason is not None:
            bad.report(str(xml), ann_id, reason)
            continue
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(VOC_CLASSES.index(name))
        difficult.append(flag == "1")
        ann_ids.append(first_ann_id + k)
    n = len(boxes)
    return ImageRecord(
        image_id=image_id, file=image, height=height, width=width,
        boxes=np.array(boxes, dtype=np.float32).reshape(n, 4), labels=np.array(labels, dtype=np.int64),
        iscrowd=np.zeros(n, dtype=bool), ann_ids=np.array(ann_ids, dtype=np.int64), segms=None,
        difficult=np.array(difficult, dtype=bool), source=str(xml),
    )


class VocDataset(DetectionDataset):
    """VOC images with boxes, labels (20 classes) and difficult flags (``Targets.difficult``).

    Args:
        devkit: the ``VOCdevkit`` folder.
        sets: (year, split) pairs, e.g. ``[("2007", "trainval"), ("2012", "trainval")]``.
    Raises:
        DataError: a split file, XML or image is missing or malformed (naming the file).
    """

    name = "voc"

    def __init__(self, devkit: Path, sets: list[tuple[str, str]], *, task: str, train: bool,
                 cfg: VocDatasetConfig, extra_fields: tuple[TargetFieldSpec, ...] = ()) -> None:
        check_task(task, self.name)
        if task != "bbox":
            raise DataError(f"the voc dataset has boxes only; task {task!r} is not supported")
        self.devkit = Path(devkit)
        self.bad = BadAnnotations(cfg.on_bad_annotation)
        records: list[ImageRecord] = []
        next_ann = 1
        for year, split in sets:
            base = self.devkit / f"VOC{year}"
            split_file = base / "ImageSets" / "Main" / f"{split}.txt"
            if not split_file.is_file():
                raise DataError(f"VOC split file not found: {split_file}")
            for name in split_file.read_text().split():
                image = base / "JPEGImages" / f"{name}.jpg"
                if cfg.check_images and not image.is_file():
                    raise DataError(f"image {image} listed in {split_file} not found")
                rec = parse_voc_xml(base / "Annotations" / f"{name}.xml", len(records) + 1, image, self.bad, next_ann)
                next_ann += 1000  # image k (0-based) gets ann ids 1000k + 1, 1000k + 2, ...
                records.append(rec)
        if cfg.difficult_as_crowd:
            for rec in records:
                rec.iscrowd = rec.difficult.copy()
        if train and cfg.filter_empty:
            records = [r for r in records if r.num_non_crowd > 0]
        self.bad.log_summary(f"voc {self.devkit}")
        self.label_to_cat_id = list(range(1, len(VOC_CLASSES) + 1))
        super().__init__(records, list(VOC_CLASSES), cfg.pipeline, train=train, task=task,
                         landmarks=cfg.landmarks, with_masks=cfg.with_masks, aug_seed=cfg.aug_seed,
                         extra_fields=extra_fields)
        self._coco_gt: Any = None

    def coco_gt_dict(self) -> dict:
        """The boxes in COCO format (difficult objects become ``iscrowd=1``: ignored by COCOeval)."""
        anns = []
        for rec in self.records:
            for j in range(len(rec)):
                x1, y1, x2, y2 = (float(v) for v in rec.boxes[j])
                anns.append({"id": int(rec.ann_ids[j]), "image_id": rec.image_id,
                             "category_id": int(rec.labels[j]) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                             "area": (x2 - x1) * (y2 - y1), "iscrowd": int(rec.difficult[j] or rec.iscrowd[j]),
                             "segmentation": [[x1, y1, x1, y2, x2, y2, x2, y1]]})
        return {
            "images": [{"id": r.image_id, "width": r.width, "height": r.height,
                        "file_name": str(r.file.relative_to(self.devkit)) if r.file else ""} for r in self.records],
            "annotations": anns,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(VOC_CLASSES)],
        }

    def coco_gt(self) -> Any:
        """The ground truth as a pycocotools ``COCO`` (so the coco evaluator also works on VOC)."""
        if self._coco_gt is None:
            self._coco_gt = quiet_coco(self.coco_gt_dict())
        return self._coco_gt


def build_voc(cfg: VocDatasetConfig, *, root: Path, train: bool, task: str, registry: Registry | None = None,
              annotations: bool = True) -> VocDataset | DetectionDataset:
    """Dataset factory: ``cfg.root`` (the VOCdevkit folder) resolved against ``root`` (``data.root``).

    ``annotations=False``: no file is read; an empty dataset with the test-time pipeline (``lsvr predict``).
    """
    extra_fields = resolve_extra_fields(cfg.extra_fields, registry, cfg.type)
    if not annotations:
        check_task(task, "voc")
        return DetectionDataset([], list(VOC_CLASSES), cfg.pipeline, train=False, task=task,
                                landmarks=cfg.landmarks, with_masks=cfg.with_masks, extra_fields=extra_fields)
    return VocDataset(resolve(root, cfg.root), [tuple(s) for s in cfg.sets], task=task, train=train, cfg=cfg,
                      extra_fields=extra_fields)
