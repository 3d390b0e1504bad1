"""Config model of the built-in Mask R-CNN head (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lsvr_core.specs import HeadConfig


class MaskRCNNHeadConfig(HeadConfig):
    """Two-stage Mask R-CNN over torchvision's RPN, RoI box head and mask head (He et al. 2017).

    The neck must provide the levels in ``in_levels`` (FPN P2-P6 in the reference configs).
    """

    type: Literal["mask_rcnn"] = "mask_rcnn"
    in_levels: tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6")
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = Field(2000, gt=0)
    rpn_post_nms_top_n_train: int = Field(1000, gt=0)
    rpn_pre_nms_top_n_test: int = Field(1000, gt=0)
    rpn_post_nms_top_n_test: int = Field(1000, gt=0)
    rpn_batch_size_per_image: int = Field(256, gt=0)
    box_batch_size_per_image: int = Field(512, gt=0)
    box_score_thresh: float = Field(0.05, ge=0, le=1)
    box_nms_thresh: float = Field(0.5, gt=0, le=1)
    box_detections_per_img: int = Field(100, gt=0)
    with_mask: bool = True
    norm: Literal["none", "gn"] = Field("none", description="GroupNorm in the RoI box/mask heads")
