"""The ``coco`` dataset: COCO-format JSON (instances or person_keypoints) and an image folder.

Category ids map to contiguous labels in increasing id order (``label_to_cat_id`` maps back). Crowd
annotations are kept with ``iscrowd=True``. Parsing rules follow LSNet spec §7.2 (mmdet ``_parse_ann_info``:
boxes with w or h < 1 px or no overlap with the image are dropped) with the ``on_bad_annotation`` policy.
``annotation_rules: mutualguide`` applies the MutualGuide v1 reader on top (:func:`mutualguide_keeps`; crowd
boxes become ordinary objects).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lsvr_core.api import DataError, Registry, TargetFieldSpec
from lsvr_data.base import DetectionDataset, check_task, resolve, resolve_extra_fields
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


def mutualguide_keeps(bbox: list[float], area: float, width: int, height: int) -> bool:
    """The MutualGuide v1 COCO box filter (``V1:data/coco.py:150-161``; spec §5 "COCO drops boxes of 6 px or
    less").

    The box ``[x, y, w, h]`` (pixels) is clipped in the reference's inclusive pixel convention,
    x1 = max(0, x), x2 = min(W - 1, x1 + max(0, w - 1)) (and likewise in y), and kept iff ``area > 0`` and
    both x2 - x1 and y2 - y1 exceed 6 px. Only the decision is taken from the reference: kept boxes keep
    lsvr's continuous xyxy coordinates.
    """
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    return float(area) > 0 and (x2 - x1) > 6 and (y2 - y1) > 6


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

    def __init__(self, ann_file: Path, img_dir: Path, *, task: str, train: bool, cfg: CocoDatasetConfig,
                 extra_fields: tuple[TargetFieldSpec, ...] = ()) -> None:
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
        self.annotation_rules = cfg.annotation_rules
        records = self._parse(data, task)
        if cfg.check_images:
            records = self._check_files(records)
        if train and cfg.filter_empty:
            records = [r for r in records if r.num_non_crowd > 0]
        self.bad.log_summary(f"coco {self.ann_file.name}")
        super().__init__(records, [c["name"] for c in cats], cfg.pipeline, train=train, task=task,
                         landmarks=cfg.landmarks, with_masks=cfg.with_masks, aug_seed=cfg.aug_seed,
                         extra_fields=extra_fields)
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
        """The ground truth the dataset keeps, as a pycocotools ``COCO`` (built once, in the calling process).

        Exactly the images of the dataset and the annotations that passed its checks (the same filters as
        loading): an annotation reported as skipped is not scored either. Source: :func:`gt_dict`.
        """
        if self._coco_gt is None:
            gt = gt_dict(self)
            dropped = len(self.bad.skipped)
            if dropped:
                log.warning("coco %s: evaluating against the %d annotations on %d images the dataset keeps; %d "
                            "annotation(s) or polygon part(s) of the file were dropped: %s", self.ann_file.name,
                            len(gt["annotations"]), len(gt["images"]), dropped, self.bad.reason_counts())
            self._coco_gt = quiet_coco(gt)
        return self._coco_gt

    # --- parsing ----------------------------------------------------------------------------------------

    def _parse(self, data: dict, task: str) -> list[ImageRecord]:
        """Records of the usable annotations; ``annotation_rules: mutualguide`` then drops what the MutualGuide
        reader drops (training only: evaluation scores :func:`gt_dict`, built from :meth:`usable_annotations`)."""
        pose = task.startswith("pose")
        records = []
        for image_id, (file_name, h, w, anns) in self.usable_annotations(data, task).items():
            if self.annotation_rules == "mutualguide":
                anns = [a for a in anns if mutualguide_keeps(a["bbox"], a.get("area", 1.0), w, h)]
            records.append(self._record(image_id, file_name, h, w, anns, pose))
        return records

    def usable_annotations(self, data: dict, task: str) -> dict[int, tuple[str, int, int, list[dict]]]:
        """``{image id: (file_name, height, width, [annotations that pass the checks])}`` of a COCO dict.

        Bad annotations go to ``self.bad`` (raise or skip). Bad polygon components are removed from the
        annotation dicts in place.
        """
        src = str(self.ann_file)
        images = {}
        for img in data["images"]:
            try:
                images[int(img["id"])] = (str(img["file_name"]), int(img["height"]), int(img["width"]))
            except (KeyError, TypeError, ValueError) as err:
                ident = img.get("id", "?") if isinstance(img, dict) else repr(img)
                raise DataError(f"{src}: image entry {ident} lacks a valid {err}") from None
        annotations = []
        for ann in data["annotations"]:
            if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int):
                got = ann.get("image_id") if isinstance(ann, dict) else ann
                ident = ann.get("id", "?") if isinstance(ann, dict) else "?"
                self.bad.report(src, ident, f"has no integer image_id (got {got!r})")
                continue
            annotations.append(ann)
        by_image = group_by_image(annotations)
        for image_id in sorted(set(by_image) - set(images)):
            for ann in by_image[image_id]:
                self.bad.report(src, ann.get("id", "?"), f"refers to image_id {image_id}, not in 'images'")
        pose = task.startswith("pose")
        return {image_id: (file_name, h, w, [a for a in by_image.get(image_id, []) if self._usable(a, h, w, pose)])
                for image_id, (file_name, h, w) in images.items()}

    def _usable(self, ann: dict, h: int, w: int, pose: bool) -> bool:
        """Check one annotation; bad polygon components are removed in place (a copy of the segmentation)."""
        src, ann_id = str(self.ann_file), ann.get("id", "?")
        if ann.get("category_id") not in self.cat_id_to_label:
            if not pose:  # a pose file's other categories are simply not used
                self.bad.report(src, ann_id, f"unknown category_id {ann.get('category_id')!r}")
            return False
        bbox = ann.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):
            self.bad.report(src, ann_id, f"bbox {bbox!r} is not a list of 4 numbers")
            return False
        area = ann.get("area", 1.0)
        reason = check_box(*(float(v) for v in bbox), w, h)
        if reason is None and (not isinstance(area, int | float) or area <= 0):
            reason = f"area {area!r} is not a positive number"
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
            if (not isinstance(kp, list) or len(kp) != 51
                    or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in kp)):
                got = f"{len(kp)} values" if isinstance(kp, list) and len(kp) != 51 else repr(kp)[:60]
                self.bad.report(src, ann_id, f"keypoints must hold 51 numbers, got {got}")
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
            iscrowd=np.array([bool(a.get("iscrowd", 0)) and self.annotation_rules != "mutualguide" for a in anns],
                             dtype=bool),  # the MutualGuide reader trains on crowd boxes as objects
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


def gt_dict(dataset: CocoDataset) -> dict[str, Any]:
    """The COCO ground-truth dict of what ``dataset`` keeps, for pycocotools.

    The annotation file is read again and put through the dataset's own checks (quietly: they were reported
    when the dataset was built); only the dataset's images (after ``check_images`` / ``filter_empty``) and the
    annotations that pass are kept. Fields COCOeval needs and the file may omit are filled in: ``id``
    (unique, above every id of the file: the fast backends reject negative ids), ``area`` (box area),
    ``iscrowd`` (0) and, for keypoints, ``num_keypoints``.
    """
    data = load_json(dataset.ann_file)
    kept_images = {r.image_id for r in dataset.records}
    reported, dataset.bad = dataset.bad, BadAnnotations("skip")
    try:
        usable = dataset.usable_annotations(data, dataset.task)
    finally:
        dataset.bad = reported
    anns = []
    next_id = 1 + max((a["id"] for group in usable.values() for a in group[3] if isinstance(a.get("id"), int)),
                      default=0)
    for image_id, (_, _, _, image_anns) in usable.items():
        if image_id not in kept_images:
            continue
        for ann in image_anns:
            ann = dict(ann)
            if not isinstance(ann.get("id"), int):
                ann["id"], next_id = next_id, next_id + 1
            ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
            ann.setdefault("iscrowd", 0)
            if isinstance(ann.get("keypoints"), list):
                ann.setdefault("num_keypoints", sum(1 for v in ann["keypoints"][2::3] if v > 0))
            anns.append(ann)
    cat_ids = set(dataset.label_to_cat_id)
    return {"images": [img for img in data["images"] if int(img["id"]) in kept_images], "annotations": anns,
            "categories": [c for c in data["categories"] if c["id"] in cat_ids]}


def build_coco(cfg: CocoDatasetConfig, *, root: Path, train: bool, task: str, registry: Registry | None = None,
               annotations: bool = True) -> CocoDataset | DetectionDataset:
    """Dataset factory (``lsvr_core.specs``): paths resolved against ``root`` (``data.root``).

    ``annotations=False`` (``lsvr predict`` with class names from the checkpoint): no file is read; the
    dataset is empty and only provides the test-time pipeline (``prepare``).
    """
    extra_fields = resolve_extra_fields(cfg.extra_fields, registry, cfg.type)
    if not annotations:
        return DetectionDataset([], [], cfg.pipeline, train=False, task=task, landmarks=cfg.landmarks,
                                with_masks=cfg.with_masks, extra_fields=extra_fields)
    base = resolve(root, cfg.root)
    default_ann = f"annotations/{'person_keypoints' if task.startswith('pose') else 'instances'}_{cfg.split}.json"
    ann_file = resolve(base, cfg.ann_file or default_ann)
    img_dir = resolve(base, cfg.img_dir or cfg.split)
    dataset = CocoDataset(ann_file, img_dir, task=task, train=train, cfg=cfg, extra_fields=extra_fields)
    if cfg.semantic_dir:
        dataset.semantic_dir = resolve(base, cfg.semantic_dir)
        if not dataset.semantic_dir.is_dir():
            raise DataError(f"data semantic_dir {dataset.semantic_dir} is not a folder")
    return dataset
