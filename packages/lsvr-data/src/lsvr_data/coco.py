"""The ``coco`` dataset: COCO-format JSON (instances or person_keypoints) and an image folder.

Category ids map to contiguous labels in increasing id order (``label_to_cat_id`` maps back). Crowd
annotations are kept with ``iscrowd=True``. Parsing rules follow LSNet spec §7.2 (mmdet ``_parse_ann_info``:
boxes with w or h < 1 px or no overlap with the image are dropped) with the ``on_bad_annotation`` policy.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from lsvr_core.api import DataError, Registry

from lsvr_data.base import DetectionDataset, check_task, resolve
from lsvr_data.config import CocoDatasetConfig
from lsvr_data.records import BadAnnotations, ImageRecord, check_box, check_polygon, group_by_image
from lsvr_data.semantic import semantic_map

log = logging.getLogger("lsvr_data")


def load_json(path: Path) -> dict[str, Any]:
    """Read a JSON object.

    Raises:
        DataError: the file is missing, unreadable or not valid JSON (message names the file and position).
    """
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"annotation file {path} is not valid JSON: {err.msg} at line {err.lineno} column "
                        f"{err.colno}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read annotation file {path}: {err}") from None
    if not isinstance(data, dict):
        raise DataError(f"annotation file {path}: expected a JSON object, got {type(data).__name__}")
    return data


def quiet_coco(source: Path | dict) -> Any:
    """A pycocotools ``COCO`` from a file or an in-memory dict, without its progress prints."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(source, dict):
            coco = COCO()
            coco.dataset = source
            coco.createIndex()
            return coco
        return COCO(str(source))


class CocoDataset(DetectionDataset):
    """COCO images with boxes, crowd flags, polygons/RLE and (pose tasks) 17 keypoints.

    Args:
        ann_file: instances or person_keypoints JSON.
        img_dir: folder with the images (``file_name`` is relative to it).
        task, train: see :class:`~lsvr_data.base.DetectionDataset`; pose tasks need a keypoint category.
        on_bad_annotation: ``"skip"`` (counted, logged) or ``"error"``.
        filter_empty: with ``train``, drop images without a usable non-crowd instance.
        check_images: fail (or skip, per policy) at start-up when image files are missing.
    Raises:
        DataError: missing/malformed annotation file, missing images (policy ``error``), bad annotations
            (policy ``error``); messages name the file and the annotation id.
    """

    name = "coco"

    def __init__(self, ann_file: Path, img_dir: Path, *, task: str, train: bool, cfg: CocoDatasetConfig) -> None:
        check_task(task, self.name)
        self.ann_file = Path(ann_file)
        self.img_dir = Path(img_dir)
        data = load_json(self.ann_file)
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DataError(f"annotation file {self.ann_file}: missing or invalid '{key}' list")
        cats = sorted(data["categories"], key=lambda c: c["id"])
        if task.startswith("pose"):
            cats = [c for c in cats if c.get("keypoints")]
            if not cats:
                raise DataError(f"task {task!r} needs a person_keypoints file; {self.ann_file} has no category "
                                f"with 'keypoints'")
        self.label_to_cat_id = [int(c["id"]) for c in cats]
        self.cat_id_to_label = {cid: i for i, cid in enumerate(self.label_to_cat_id)}
        self.bad = BadAnnotations(cfg.on_bad_annotation)
        records = self._parse(data, task)
        if cfg.check_images:
            records = self._check_files(records)
        if train and cfg.filter_empty:
            records = [r for r in records if r.num_non_crowd > 0]
        self.bad.log_summary(f"coco {self.ann_file.name}")
        super().__init__(records, [c["name"] for c in cats], cfg.pipeline, train=train, task=task,
                         landmarks=cfg.landmarks, with_masks=cfg.with_masks, aug_seed=cfg.aug_seed)
        self._coco_gt: Any = None
        self.semantic_dir: Path | None = None

    def __getitem__(self, index: int):
        """``(image, Targets)`` as the base class, plus ``Targets.semantic`` when ``semantic_dir`` is set."""
        image, targets = super().__getitem__(index)
        if self.semantic_dir is not None:
            rec = self.records[index]
            targets.semantic = semantic_map(self.semantic_dir, rec.file, (rec.height, rec.width), targets)
        return image, targets

    def coco_gt(self) -> Any:
        """The annotation file as a pycocotools ``COCO`` (loaded once, in the calling process)."""
        if self._coco_gt is None:
            self._coco_gt = quiet_coco(self.ann_file)
        return self._coco_gt

    # --- parsing ----------------------------------------------------------------------------------------

    def _parse(self, data: dict, task: str) -> list[ImageRecord]:
        src = str(self.ann_file)
        images = {}
        for img in data["images"]:
            try:
                images[int(img["id"])] = (str(img["file_name"]), int(img["height"]), int(img["width"]))
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"{src}: image entry {img.get('id', '?')} lacks a valid {err}") from None
        by_image = group_by_image(data["annotations"])
        for image_id in sorted(set(by_image) - set(images)):
            for ann in by_image[image_id]:
                self.bad.report(src, ann.get("id", "?"), f"refers to image_id {image_id}, not in 'images'")
        pose = task.startswith("pose")
        records = []
        for image_id, (file_name, h, w) in images.items():
            anns = [a for a in by_image.get(image_id, []) if self._usable(a, h, w, pose)]
            records.append(self._record(image_id, file_name, h, w, anns, pose))
        return records

    def _usable(self, ann: dict, h: int, w: int, pose: bool) -> bool:
        """Check one annotation; bad polygon components are removed in place (a copy of the segmentation)."""
        src, ann_id = str(self.ann_file), ann.get("id", "?")
        if ann.get("category_id") not in self.cat_id_to_label:
            if not pose:  # a pose file's other categories are simply not used
                self.bad.report(src, ann_id, f"unknown category_id {ann.get('category_id')!r}")
            return False
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            self.bad.report(src, ann_id, f"bbox {bbox!r} is not a list of 4 numbers")
            return False
        reason = check_box(*(float(v) for v in bbox), w, h)
        if reason is None and float(ann.get("area", 1.0)) <= 0:
            reason = f"area {ann.get('area')} <= 0"
        if reason is not None:
            self.bad.report(src, ann_id, reason)
            return False
        segm = ann.get("segmentation")
        if isinstance(segm, list):
            good = []
            for comp in segm:
                why = check_polygon(comp)
                if why is None:
                    good.append(comp)
                else:
                    self.bad.report(src, ann_id, why)
            if segm and not good:
                self.bad.report(src, ann_id, "no valid polygon component left")
                return False
            ann["segmentation"] = good
        elif segm is not None and not (isinstance(segm, dict) and "counts" in segm and "size" in segm):
            self.bad.report(src, ann_id, f"segmentation is neither polygons nor RLE ({type(segm).__name__})")
            return False
        if pose:
            kp = ann.get("keypoints")
            if not isinstance(kp, list) or len(kp) != 51:
                self.bad.report(src, ann_id, f"keypoints must hold 51 numbers, got {len(kp) if kp else kp!r}")
                return False
        return True

    def _record(self, image_id: int, file_name: str, h: int, w: int, anns: list[dict], pose: bool) -> ImageRecord:
        n = len(anns)
        boxes = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (a["bbox"] for a in anns)],
                         dtype=np.float32).reshape(n, 4)
        extremes = None
        if n and all("extreme_points" in a for a in anns):
            extremes = np.array([a["extreme_points"][:8] for a in anns], dtype=np.float32).reshape(n, 4, 2)
        return ImageRecord(
            image_id=image_id, file=self.img_dir / file_name, height=h, width=w, boxes=boxes,
            labels=np.array([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=np.int64),
            iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
            ann_ids=np.array([int(a.get("id", -1)) for a in anns], dtype=np.int64),
            segms=[a.get("segmentation") for a in anns],
            keypoints=np.array([a["keypoints"] for a in anns], dtype=np.float32).reshape(n, 17, 3) if pose else None,
            extreme_points=extremes, source=str(self.ann_file),
        )

    def _check_files(self, records: list[ImageRecord]) -> list[ImageRecord]:
        missing = [r for r in records if r.file is not None and not r.file.is_file()]
        if not missing:
            return records
        names = ", ".join(str(r.file) for r in missing[:3])
        if self.bad.policy == "error":
            raise DataError(f"{len(missing)} image file(s) listed in {self.ann_file} not found, e.g. {names}")
        log.warning("coco %s: %d image file(s) not found, skipped (e.g. %s)", self.ann_file.name, len(missing), names)
        gone = {id(r) for r in missing}
        return [r for r in records if id(r) not in gone]


def build_coco(cfg: CocoDatasetConfig, *, root: Path, train: bool, task: str,
               registry: Registry | None = None) -> CocoDataset:
    """Dataset factory (``lsvr_core.specs``): paths resolved against ``root`` (``data.root``)."""
    base = resolve(root, cfg.root)
    default_ann = f"annotations/{'person_keypoints' if task.startswith('pose') else 'instances'}_{cfg.split}.json"
    ann_file = resolve(base, cfg.ann_file or default_ann)
    img_dir = resolve(base, cfg.img_dir or cfg.split)
    dataset = CocoDataset(ann_file, img_dir, task=task, train=train, cfg=cfg)
    if cfg.semantic_dir:
        dataset.semantic_dir = resolve(base, cfg.semantic_dir)
        if not dataset.semantic_dir.is_dir():
            raise DataError(f"data semantic_dir {dataset.semantic_dir} is not a folder")
    return dataset
