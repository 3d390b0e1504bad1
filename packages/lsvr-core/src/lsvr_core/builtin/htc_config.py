"""Config model of the built-in Hybrid Task Cascade head (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lsvr_core.specs import HeadConfig

Quad = tuple[float, float, float, float]


class HTCHeadConfig(HeadConfig):
    """Hybrid Task Cascade (Chen et al., CVPR 2019): RPN + 3 cascaded box stages with interleaved mask
    branches, mask information flow and a fused semantic-segmentation branch.

    Defaults are mmdet 2.11's ``htc_r50_fpn_1x_coco`` (LESA spec §4.2): IoU thresholds 0.5/0.6/0.7, stage loss
    weights 1/0.5/0.25, class-agnostic box regression with per-stage target stds, smooth-L1 (beta 1) box
    losses, RPN smooth-L1 beta 1/9, RoIAlign ``aligned`` (mmcv), P6 by max-pooling P5 (the neck then outputs
    P2-P5), FusedSemanticHead over all in_levels fused at ``semantic_fusion_level`` (p3, stride 8) with 4
    convs, 183 COCO-stuff classes, loss weight 0.2, ignore label 255; test: score 0.001, NMS 0.5, 100
    detections, masks pasted in the original frame.
    """

    type: Literal["htc"] = "htc"
    in_levels: tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6")
    roi_levels: tuple[str, ...] = Field(("p2", "p3", "p4", "p5"), description="levels the RoI heads pool from")
    maxpool_last_level: bool = Field(True, description="make the last in_level (p6) by max-pool (kernel 1, stride "
                                                       "2) of the one before (mmdet FPN); the neck must not output it")
    anchor_sizes: tuple[int, ...] = Field((32, 64, 128, 256, 512), description="one anchor size per in_level, px")
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = Field(2000, gt=0, description="per level")
    rpn_post_nms_top_n_train: int = Field(2000, gt=0)
    rpn_pre_nms_top_n_test: int = Field(1000, gt=0, description="per level")
    rpn_post_nms_top_n_test: int = Field(1000, gt=0)
    rpn_nms_thresh: float = Field(0.7, gt=0, le=1)
    rpn_fg_iou_thresh: float = Field(0.7, gt=0, le=1)
    rpn_bg_iou_thresh: float = Field(0.3, ge=0, le=1)
    rpn_batch_size_per_image: int = Field(256, gt=0)
    rpn_positive_fraction: float = Field(0.5, gt=0, le=1)
    rpn_box_beta: float = Field(1.0 / 9, ge=0, description="smooth-L1 beta of the RPN box loss (0: L1)")
    stage_iou_thresholds: tuple[float, ...] = Field((0.5, 0.6, 0.7), description="fg/bg IoU per cascade stage")
    stage_loss_weights: tuple[float, ...] = Field((1.0, 0.5, 0.25), description="weight of each stage's losses")
    stage_box_stds: tuple[Quad, ...] = Field(
        ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)),
        description="per stage (dx, dy, dw, dh) target stds of the box coder (torchvision weights = 1 / std)")
    box_batch_size_per_image: int = Field(512, gt=0)
    box_positive_fraction: float = Field(0.25, gt=0, le=1)
    box_beta: float = Field(1.0, ge=0, description="smooth-L1 beta of the stage box losses (0: L1)")
    representation_size: int = Field(1024, gt=0, description="width of each box head's two FC layers")
    mask_head_channels: int = Field(256, gt=0)
    mask_head_convs: int = Field(4, gt=0)
    roi_sampling_ratio: int = Field(0, ge=0, description="RoIAlign samples per bin side; 0: adaptive (mmdet)")
    roi_align_aligned: bool = Field(True, description="RoIAlign aligned=True (mmcv), also for mask targets")
    interleaved: bool = Field(True, description="train each mask branch on RoIs re-sampled from the same stage's "
                                                "regressed boxes")
    mask_info_flow: bool = Field(True, description="feed each mask head the features of the previous ones")
    with_mask: bool = True
    with_semantic: bool = Field(True, description="fused semantic-segmentation branch (needs per-image semantic "
                                                  "maps: the dataset's semantic_dir)")
    semantic_classes: int = Field(183, gt=0, description="COCO-stuff stuffthingmaps classes")
    semantic_fusion_level: str = Field("p3", description="in_level the semantic branch fuses at and pools from")
    semantic_convs: int = Field(4, ge=0)
    semantic_loss_weight: float = Field(0.2, ge=0)
    semantic_ignore_label: int = Field(255, ge=0)
    box_score_thresh: float = Field(0.001, ge=0, le=1)
    box_nms_thresh: float = Field(0.5, gt=0, le=1)
    box_detections_per_img: int = Field(100, gt=0)
    mask_paste_frame: Literal["input", "original"] = Field(
        "original", description="original: paste RoI masks at the original image size (mmdet); input: paste at "
                                "the resized input size, then resize")

    def input_level_names(self) -> tuple[str, ...] | None:
        """The neck levels read: ``in_levels`` without the last one when the head max-pools it itself."""
        return tuple(self.in_levels[:-1]) if self.maxpool_last_level else tuple(self.in_levels)

    @model_validator(mode="after")
    def _check(self) -> HTCHeadConfig:
        n = len(self.stage_iou_thresholds)
        if n == 0 or len(self.stage_loss_weights) != n or len(self.stage_box_stds) != n:
            raise ValueError(f"stage_iou_thresholds, stage_loss_weights and stage_box_stds need one entry per stage; "
                             f"got {n}, {len(self.stage_loss_weights)}, {len(self.stage_box_stds)}")
        if len(self.anchor_sizes) != len(self.in_levels):
            raise ValueError(f"anchor_sizes {list(self.anchor_sizes)} needs one size per in_level "
                             f"{list(self.in_levels)}")
        missing = [lv for lv in self.roi_levels if lv not in self.in_levels]
        if missing or not self.roi_levels:
            raise ValueError(f"roi_levels {list(self.roi_levels)} must be a non-empty subset of in_levels "
                             f"{list(self.in_levels)}")
        if self.semantic_fusion_level not in self.in_levels:
            raise ValueError(f"semantic_fusion_level {self.semantic_fusion_level!r} is not among in_levels "
                             f"{list(self.in_levels)}")
        if self.maxpool_last_level and len(self.in_levels) < 2:
            raise ValueError("maxpool_last_level needs at least two in_levels")
        return self
