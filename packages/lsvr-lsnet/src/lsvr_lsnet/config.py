"""Config models of the LSNet components (torch-free; imported at registration time).

Defaults reproduce the reference configs (LSNet spec §2.1-§2.2, §3, §4.4, §6). Fields left ``None`` take the
per-task value of the spec, resolved by the head when it is built.
"""

from __future__ import annotations

from typing import Annotated, Literal

from lsvr_core.api import AssignerConfig, FocalLossConfig, HeadConfig, LossConfig, Slot
from pydantic import Field

TASKS: tuple[str, ...] = ("bbox", "segm", "pose_bbox", "pose_kbox")


class CentroidAssignerConfig(AssignerConfig):
    """Init-stage assigner: one nearest grid point on a scale-selected FPN level per object (spec §3.1)."""

    type: Literal["centroid"] = "centroid"
    scale: float = Field(4.0, gt=0, description="level = trunc(log2(sqrt(w*h) / scale)), clamped to the levels")
    pos_num: int = Field(1, gt=0, description="positives per object")


class ATSSAssignerConfig(AssignerConfig):
    """Refine/classification assigner: ATSS over boxes decoded from the detached init predictions (spec §3.2)."""

    type: Literal["atss"] = "atss"
    topk: int = Field(9, gt=0, description="candidates per FPN level, nearest predicted-box centres")
    inside_eps: float = Field(0.01, ge=0,
                              description="a candidate's centre must lie inside the GT by more than this (px)")


class CrossIoULossConfig(LossConfig):
    """Cross-IoU loss on (up, down, left, right) landmark vectors (spec §4.2).

    ``loss_type`` None lets the head choose by task and branch: ``bbox`` for boxes (and the pose_bbox box
    branch), ``polygon`` for contours, ``keypoint`` for keypoints.
    """

    type: Literal["cross_iou"] = "cross_iou"
    loss_type: Literal["bbox", "polygon", "keypoint"] | None = None
    alpha: float = Field(0.2, ge=0, lt=1, description="target of the opposite direction, as a fraction of |offset|")
    group_stride: int = Field(9, gt=0, description="polygon: landmarks k with equal k mod group_stride form a group")
    eps: float = Field(1e-6, gt=0, description="guards the ratios and the penalty's 0/0 (spec §4.2 hazard)")
    loss_weight: float = Field(1.0, ge=0)


class LSNetHeadConfig(HeadConfig):
    """LSNet head (spec §2.2-§2.4) over FPN levels, for the tasks bbox, segm, pose_bbox and pose_kbox."""

    type: Literal["lsnet"] = "lsnet"
    in_levels: tuple[str, ...] = Field(("p3", "p4", "p5", "p6", "p7"), min_length=3,
                                       description="neck levels, fine to coarse; at least 3 (pyramid sampling)")
    feat_channels: int = Field(256, gt=0, description="tower / fusion width")
    stacked_convs: int = Field(3, ge=0, description="blocks per tower")
    conv_module: Literal["dcn", "plain"] = Field("dcn", description="tower block: DCNv2 3x3 or plain 3x3, + GN + ReLU")
    norm_groups: int = Field(32, gt=0, description="GroupNorm groups in towers and fusions")
    gradient_mul: float = Field(0.1, ge=0, le=1, description="gradient factor on the DCN sampling offsets (§2.3.5)")
    point_base_scale: float = Field(4.0, gt=0, description="losses normalise by point_base_scale * stride (§4.1)")
    prior_prob: float = Field(0.01, gt=0, lt=1, description="classifier bias = -log((1 - p) / p)")
    faithful_offset_scaling: bool = Field(
        False, description="reproduce the reference's compounding offset scaling on the 3rd sampled level (§11.1)")
    pad_divisor: int = Field(32, gt=0, description="grid points inside each image padded to this are valid (§3)")

    # nested slots and the interface each calls (lsvr_core.hookspecs): the resolver offers only what fits
    assigner_init: Annotated[AssignerConfig, Slot("point_assigner")] = CentroidAssignerConfig()
    assigner_refine: Annotated[AssignerConfig, Slot("point_box_assigner")] = ATSSAssignerConfig()
    loss_cls: Annotated[LossConfig, Slot("classification_loss")] = FocalLossConfig()
    loss_init: Annotated[LossConfig, Slot("landmark_loss")] = CrossIoULossConfig(loss_weight=1.0)
    loss_refine: Annotated[LossConfig, Slot("landmark_loss")] = CrossIoULossConfig(loss_weight=2.0)
    loss_box_init: Annotated[LossConfig, Slot("landmark_loss")] = Field(
        CrossIoULossConfig(loss_weight=0.1),
        description="pose_bbox only: the box (border mid-point) branch, init stage")
    loss_box_refine: Annotated[LossConfig, Slot("landmark_loss")] = Field(
        CrossIoULossConfig(loss_weight=0.2), description="pose_bbox only: the box branch, refine stage")

    nms_pre: int | None = Field(None, gt=0, description="top locations per level before NMS (None: 1000, pose 100)")
    score_thr: float = Field(0.05, ge=0, le=1)
    nms_iou: float = Field(0.6, gt=0, le=1, description="class-wise NMS IoU threshold")
    max_per_img: int | None = Field(None, gt=0, description="detections per image (None: 100, pose 20)")
    pose_min_area: float = Field(1024.0, ge=0, description="pose: drop boxes with area <= this (original px^2)")
