"""Config models of lsvr-data's datasets, transforms and evaluators (torch-free).

Paths in dataset configs that are relative are taken relative to the run config's ``data.root``; absolute
paths are used as they are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lsvr_core.api import DatasetConfig, EvaluatorConfig

BadAnnotationPolicy = Literal["error", "skip"]


class PipelineConfig(BaseModel):
    """The per-image transform pipeline (no normalisation, no padding: the model and ``collate`` do those).

    Train (``train=True``) order: ``ssd_aug`` (crop, photometric, expand) -> horizontal flip -> resize.
    Test: resize only (``scale`` for ``keep_ratio``, ``square_size`` for ``square``).

    Sources: LSNet spec §7.3 (keep-ratio resize, multi-scale short side, flip with landmark swaps);
    MutualGuide spec §5 (SSD augmentation, square resize).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    resize: Literal["keep_ratio", "square", "none"] = "keep_ratio"
    scale: tuple[int, int] = Field(
        (1333, 800), description="keep_ratio: (long-edge bound, short-edge target) pixels, mmdet img_scale order"
    )
    short_side_range: tuple[int, int] | None = Field(
        None, description="train only: short side drawn uniformly from [lo, hi] (long edge still <= scale[0])"
    )
    square_size: int = Field(320, gt=0, le=16384,
                             description="square: output is square_size x square_size (no keep ratio)")
    flip_prob: float = Field(0.5, ge=0, le=1, description="train only: horizontal flip probability")
    ssd_aug: bool = Field(False, description="train only: SSD photometric distortion, expand and IoU crop")
    expand_prob: float = Field(0.6, ge=0, le=1, description="ssd_aug: probability of the expand (zoom-out) step")
    expand_max_ratio: float = Field(4.0, ge=1, description="ssd_aug: expand canvas side up to this ratio")
    fill: tuple[float, float, float] = Field(
        (123.0, 117.0, 104.0), description="ssd_aug: RGB fill of the expanded canvas (MutualGuide mean)"
    )
    mg_v2_aug: bool = Field(
        False, description="train only, needs resize: square: the MutualGuide v2 (HEAD) augmentation: pre-resize to "
        "square_size, photometric distortion, combined crop/expand (p 0.75), flip, resize"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> PipelineConfig:
        if self.short_side_range is not None and self.short_side_range[0] > self.short_side_range[1]:
            raise ValueError(f"short_side_range {self.short_side_range}: lo must be <= hi")
        if min(self.scale) <= 0 or max(self.scale) > 16384:
            raise ValueError(f"scale {self.scale} must be positive pixel sizes <= 16384")
        if self.short_side_range is not None and not 0 < self.short_side_range[0] <= self.short_side_range[1] <= 16384:
            raise ValueError(f"short_side_range {self.short_side_range} must be pixel sizes in (0, 16384]")
        if self.mg_v2_aug and (self.resize != "square" or self.ssd_aug):
            raise ValueError("mg_v2_aug needs resize: square and ssd_aug: false")
        return self


class _DatasetCommon(DatasetConfig):
    pipeline: PipelineConfig = PipelineConfig()
    landmarks: bool = Field(
        False, description="fill extras extreme_points (N,4,2) and contours (N,36,2) (always for segm)"
    )
    extra_fields: list[str] = Field(
        [], description="declared target fields (lsvr_target_fields) computed by their derive function per item"
    )
    with_masks: bool = Field(False, description="fill masks (N,H,W) uint8 at the transformed image size")
    on_bad_annotation: BadAnnotationPolicy = Field(
        "skip", description="degenerate boxes/polygons: 'skip' (counted, logged warning) or 'error' (DataError)"
    )
    filter_empty: bool = Field(True, description="train only: drop images without a usable non-crowd instance")
    aug_seed: int = Field(0, description="seed of the augmentation random stream (see set_epoch)")


class CocoDatasetConfig(_DatasetCommon):
    """COCO 2017 layout (mmdetection's): ``root/annotations/*.json``, ``root/train2017``, ``root/val2017``.

    ``root`` is relative to ``data.root`` (default: ``data.root`` itself). ``ann_file`` defaults to
    ``annotations/instances_{split}.json`` (``person_keypoints_{split}.json`` for pose tasks) and ``img_dir``
    to ``{split}``; both are relative to ``root``. Absolute paths are used as they are.
    """

    type: Literal["coco"] = "coco"
    root: str = "."
    split: str = "val2017"
    ann_file: str | None = None
    img_dir: str | None = None
    check_images: bool = Field(True, description="check at start-up that every image file exists")
    semantic_dir: str | None = Field(
        None, description="folder of per-image semantic PNGs (COCO-stuff stuffthingmaps/<split>, relative to root) "
                          "loaded into Targets.semantic for heads with a semantic branch (htc)")
    annotation_rules: Literal["mmdet", "mutualguide"] = Field(
        "mmdet",
        description="'mmdet': crowd boxes kept as crowd regions, boxes under 1 px dropped; 'mutualguide' (the "
        "MutualGuide v1 reader, spec §5): crowd boxes become ordinary objects of their class and boxes whose "
        "clipped inclusive width or height is 6 px or less are dropped",
    )

    def known_num_classes(self, task: str) -> int | None:
        """80 (instances) or 1 (person keypoints) for the default COCO annotation files; None for others."""
        if self.ann_file is not None:
            return None
        return 1 if task.startswith("pose") else 80


class VocDatasetConfig(_DatasetCommon):
    """PASCAL VOC layout ``root/VOC<year>/{Annotations,JPEGImages,ImageSets/Main/<split>.txt}``.

    ``root`` is the ``VOCdevkit`` folder, relative to ``data.root`` (default: ``data.root`` itself). Several
    (year, split) sets are concatenated in order (VOC07+12: ``[["2007", "trainval"], ["2012", "trainval"]]``).
    """

    type: Literal["voc"] = "voc"
    root: str = "."
    sets: list[tuple[str, str]] = Field(default_factory=lambda: [("2007", "test")], description="[(year, split)]")
    difficult_as_crowd: bool = Field(False, description="mark difficult objects iscrowd (ignored by assigners)")
    check_images: bool = True

    def known_num_classes(self, task: str) -> int:
        return 20

    @field_validator("sets", mode="before")
    @classmethod
    def _years_as_text(cls, value: object) -> object:
        """Accept ``[[2007, trainval]]`` (a YAML int year) as well as ``[["2007", "trainval"]]``."""
        if isinstance(value, list | tuple):
            return [[str(v) for v in item] if isinstance(item, list | tuple) else item for item in value]
        return value


class SyntheticDatasetConfig(_DatasetCommon):
    """Procedurally drawn shapes (rectangle, ellipse, triangle, star) on textured backgrounds; no files."""

    type: Literal["synthetic"] = "synthetic"
    split: Literal["train", "val"] = "train"
    num_images: int = Field(256, gt=0, le=1_000_000)
    image_size: int = Field(128, ge=32, le=8192, description="square images of this side, pixels")
    seed: int = 0
    max_objects: int = Field(4, ge=1, le=100)
    pipeline: PipelineConfig = PipelineConfig(resize="none")

    def known_num_classes(self, task: str) -> int:
        return 4  # rectangle, ellipse, triangle, star (lsvr_data.synthetic.CLASSES)


class CocoEvaluatorConfig(EvaluatorConfig):
    """pycocotools COCOeval; ``iou_types`` default by task (bbox; segm adds segm; pose adds keypoints)."""

    type: Literal["coco"] = "coco"
    iou_types: list[Literal["bbox", "segm", "keypoints"]] | None = None
    per_class: bool = Field(True, description="also report <iou_type>/AP_<class name> (log and metrics.jsonl)")
    max_dets: int = Field(100, gt=0, description="detections kept per image (highest scores)")
    backend: Literal["auto", "pycocotools", "faster_coco_eval", "hotcoco"] = Field(
        "auto", description="COCOeval implementation: auto = fastest installed (hotcoco, faster_coco_eval, "
        "pycocotools); all give identical stats")


class VocEvaluatorConfig(EvaluatorConfig):
    """VOC mAP@0.5 (11-point VOC07 or area method), difficult ignored, and mean AP over IoU 0.50:0.95."""

    type: Literal["voc"] = "voc"
    use_07_metric: bool = True
    per_class: bool = Field(True, description="also report voc/AP50_<class name> (log and metrics.jsonl)")
