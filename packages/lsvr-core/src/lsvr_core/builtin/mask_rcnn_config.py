"""Config model of the built-in Mask R-CNN head (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lsvr_core.specs import HeadConfig


class MaskRCNNHeadConfig(HeadConfig):
    """Two-stage Mask R-CNN over torchvision's RPN, RoI box head and mask head (He et al. 2017).

    The neck must provide the levels in ``in_levels`` (FPN P2-P6 in the reference configs); the RPN runs on
    all of them, the RoI heads pool from ``roi_levels``. Defaults are mmdet 2.11's ``mask_rcnn_r50_fpn``
    (LESA spec §4.1). The mask branch is built for task ``segm`` only.
    """

    type: Literal["mask_rcnn"] = "mask_rcnn"
    in_levels: tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6")
    roi_levels: tuple[str, ...] = Field(("p2", "p3", "p4", "p5"), description="levels the RoI heads pool from")
    anchor_sizes: tuple[int, ...] = Field((32, 64, 128, 256, 512), description="one anchor size per in_level, px")
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = Field(2000, gt=0, description="per level")
    rpn_post_nms_top_n_train: int = Field(1000, gt=0)
    rpn_pre_nms_top_n_test: int = Field(1000, gt=0, description="per level")
    rpn_post_nms_top_n_test: int = Field(1000, gt=0)
    rpn_nms_thresh: float = Field(0.7, gt=0, le=1)
    rpn_fg_iou_thresh: float = Field(0.7, gt=0, le=1)
    rpn_bg_iou_thresh: float = Field(0.3, ge=0, le=1)
    rpn_batch_size_per_image: int = Field(256, gt=0)
    rpn_positive_fraction: float = Field(0.5, gt=0, le=1)
    box_fg_iou_thresh: float = Field(0.5, gt=0, le=1)
    box_bg_iou_thresh: float = Field(0.5, ge=0, le=1)
    box_batch_size_per_image: int = Field(512, gt=0)
    box_positive_fraction: float = Field(0.25, gt=0, le=1)
    box_score_thresh: float = Field(0.05, ge=0, le=1)
    box_nms_thresh: float = Field(0.5, gt=0, le=1)
    box_detections_per_img: int = Field(100, gt=0)
    representation_size: int = Field(1024, gt=0, description="width of the box head's two FC layers")
    mask_head_channels: int = Field(256, gt=0, description="channels of the mask head's convs and deconv")
    mask_head_convs: int = Field(4, gt=0)
    roi_sampling_ratio: int = Field(0, ge=0, description="RoIAlign samples per bin side; 0: adaptive (mmdet)")
    with_mask: bool = True
    norm: Literal["none", "gn"] = Field("none", description="GroupNorm in the RoI box/mask heads (box head "
                                                            "becomes 4 conv + 1 FC)")
    # mmdet 2.x behaviour (the LESA reference, spec §4.1); the defaults are torchvision's
    roi_align_aligned: bool = Field(False, description="RoIAlign with aligned=True (pixel centres at +0.5, mmdet "
                                                       "2.x) for the RoI features and the mask targets")
    box_loss: Literal["smooth_l1", "l1"] = Field(
        "smooth_l1", description="RPN and RoI box-regression loss: smooth_l1 (beta 1/9, torchvision) or l1 (mmdet "
                                 "Mask R-CNN); same normalisation (sum / sampled anchors or RoIs)")
    maxpool_last_level: bool = Field(
        False, description="make the last in_level (p6) in the head by max-pool (kernel 1, stride 2) of the level "
                           "before it, as mmdet's FPN without extra convs; the neck must not output it")
    mask_paste_frame: Literal["input", "original"] = Field(
        "input", description="input: paste masks at the resized input size, then resize them to the original "
                             "image; original: paste the RoI masks directly at the original image size (mmdet)")

    def input_level_names(self) -> tuple[str, ...] | None:
        """The neck levels read: ``in_levels`` without the last one when the head max-pools it itself."""
        return tuple(self.in_levels[:-1]) if self.maxpool_last_level else tuple(self.in_levels)

    @model_validator(mode="after")
    def _check_levels(self) -> MaskRCNNHeadConfig:
        if len(self.anchor_sizes) != len(self.in_levels):
            raise ValueError(f"anchor_sizes {list(self.anchor_sizes)} needs one size per in_level "
                             f"{list(self.in_levels)}")
        if self.maxpool_last_level and len(self.in_levels) < 2:
            raise ValueError("maxpool_last_level needs at least two in_levels (the last is pooled from the one "
                             "before)")
        missing = [lv for lv in self.roi_levels if lv not in self.in_levels]
        if missing or not self.roi_levels:
            raise ValueError(f"roi_levels {list(self.roi_levels)} must be a non-empty subset of in_levels "
                             f"{list(self.in_levels)}")
        return self
