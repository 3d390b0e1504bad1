"""Config models of the LSNet components (torch-free; imported at registration time).

Defaults reproduce the reference configs (LSNet spec §2.1-§2.2, §3, §4.4, §6). Fields left ``None`` take the
per-task value of the spec, resolved by the head when it is built.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from lsvr_core.api import (
    AssignerConfig,
    BackboneConfig,
    FocalLossConfig,
    HeadConfig,
    LossConfig,
    Slot,
    SmoothL1LossConfig,
)

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


class PointHeatmapAssignerConfig(AssignerConfig):
    """CPV corner heatmap targets: nearest point per corner and level + Gaussian bumps (spec §3.3, §5)."""

    type: Literal["point_hm"] = "point_hm"
    gaussian_bump: bool = Field(True, description="soft targets exp(-d^2 / 2 sigma^2) within the CornerNet radius")
    gaussian_iou: float = Field(0.7, gt=0, lt=1, description="min IoU that sets the CornerNet radius")


class GaussianFocalLossConfig(LossConfig):
    """CornerNet focal loss on Gaussian heatmap targets (CPV corners, spec §5)."""

    type: Literal["gaussian_focal"] = "gaussian_focal"
    alpha: float = Field(2.0, ge=0)
    gamma: float = Field(4.0, ge=0)
    loss_weight: float = Field(1.0, ge=0)


class SEPFocalLossConfig(LossConfig):
    """Focal loss with separately normalised positives and negatives (CPV semantic branch, spec §5)."""

    type: Literal["sep_focal"] = "sep_focal"
    alpha: float = Field(0.25, ge=0, le=1)
    gamma: float = Field(2.0, ge=0)
    loss_weight: float = Field(1.0, ge=0)


class LSCPVHeadConfig(LSNetHeadConfig):
    """LSNet bbox head with corner point verification (``LSCPVHead``, spec §5): a shared DCN block, a semantic
    branch, top-left / bottom-right corner pooling with heatmap + offset outputs fed to the refiner and the
    classifier, and corner snapping of the boxes of levels 2..5 at inference.

    Slot interfaces of the CPV-only slots (``loss_offset`` is a standard ``regression_loss``):
    ``corner_heatmap_assigner``: ``(points (P, 2) xy px, point_strides (P,), gt_boxes (G, 4)) -> (top-left,
    bottom-right)`` each with ``heatmap`` (P,) in [0, 1] and ``offset`` (P, 2) cells.
    ``corner_heatmap_loss``: ``(probabilities (M,), target (M,) in [0, 1], weight=, avg_factor=)``.
    ``semantic_loss``: ``(logits (M,), target (M,) in {0, 1}, weight (M,), avg_factor)``.
    """

    type: Literal["lscpv"] = "lscpv"  # type: ignore[assignment]
    shared_stacked_convs: int = Field(1, ge=0, description="blocks after the box tower feeding corners and semantics")
    corner_dim: int = Field(64, gt=0, description="channels of the pooled corner branches")
    corner_first_kernel: int = Field(3, gt=0, description="kernel of the pre-pool convs (odd)")
    corner_kernel: int = Field(1, gt=0, description="kernel of the corner block's output conv (odd)")
    snap_corners: bool = Field(True, description="inference: move box corners to the corner heatmap maxima (§5)")
    assigner_heatmap: Annotated[AssignerConfig, Slot("corner_heatmap_assigner")] = PointHeatmapAssignerConfig()
    loss_heatmap: Annotated[LossConfig, Slot("corner_heatmap_loss")] = GaussianFocalLossConfig(loss_weight=0.25)
    loss_offset: Annotated[LossConfig, Slot("regression_loss")] = SmoothL1LossConfig(beta=1.0 / 9, loss_weight=1.0)
    loss_sem: Annotated[LossConfig, Slot("semantic_loss")] = SEPFocalLossConfig(loss_weight=0.1)


RES2NET_STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}


class Res2NetConfig(BackboneConfig):
    """Res2Net (Gao et al. 2019) v1d trunk (deep stem, average-pool shortcuts) as in mmdetection, returning
    c2..c5 (strides 4, 8, 16, 32); the backbone of the LSNet R2-101 rows (spec §2.1)."""

    type: Literal["res2net"] = "res2net"
    depth: Literal[50, 101, 152] = 101
    scales: int = Field(4, ge=2, description="splits of each bottleneck's 3x3 stage (the 's' of 26w x 4s)")
    base_width: int = Field(26, gt=0, description="width of one split for the first stage (the 'w' of 26w x 4s)")
    deep_stem: bool = Field(True, description="three 3x3 convs instead of the 7x7 stem (v1d)")
    avg_down: bool = Field(True, description="average-pool then 1x1 conv in strided shortcuts (v1d)")
    frozen_stages: int = Field(1, ge=-1, le=4, description="-1: none; 0: stem; k: stem and stages 1..k")
    norm: Literal["bn", "frozen_bn", "syncbn"] = "bn"
    norm_eval: bool = Field(True, description="keep BatchNorm in eval mode while training")
    dcn_stages: tuple[bool, bool, bool, bool] = Field(
        (False, False, False, False), description="DCNv2 for every 3x3 split conv of stages c2..c5 (zero-init offsets)")
    out_levels: tuple[str, ...] = ("c3", "c4", "c5")
    weights: str | None = Field(None, description="local ImageNet checkpoint (mmdetection key names, e.g. "
                                "res2net101_v1d_26w_4s_mmdetv2-f0a600f9.pth); never downloaded")

    @field_validator("out_levels")
    @classmethod
    def _known_levels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [lv for lv in value if lv not in RES2NET_STRIDES]
        if bad or not value:
            raise ValueError(f"levels must be among {', '.join(RES2NET_STRIDES)}; unknown: {bad or 'none given'}")
        return value

    def output_strides(self) -> dict[str, int]:
        """Stride (pixels) of each returned level, for the config's level checks."""
        return {lv: RES2NET_STRIDES[lv] for lv in self.out_levels}
