"""Config models of lsvr-core's built-in components (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from lsvr_core.specs import BackboneConfig, HeadConfig, LossConfig, NeckConfig

RESNET_STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}


class ResNetConfig(BackboneConfig):
    """torchvision ResNet / ResNeXt trunk returning c2..c5 (strides 4, 8, 16, 32)."""

    type: Literal["resnet"] = "resnet"
    depth: Literal[18, 34, 50, 101, 152] = 50
    groups: int = Field(1, gt=0, description="ResNeXt cardinality (32 for ResNeXt-101 32x8d)")
    width_per_group: int = Field(64, gt=0)
    frozen_stages: int = Field(1, ge=-1, le=4, description="-1: none; 0: stem; k: stem and stages 1..k")
    norm: Literal["bn", "frozen_bn", "syncbn"] = "frozen_bn"
    norm_eval: bool = Field(True, description="keep BatchNorm in eval mode while training")
    dcn_stages: tuple[bool, bool, bool, bool] = Field(
        (False, False, False, False), description="deformable 3x3 conv (DCNv2) in stages c2..c5 (needs lsvr-ops-triton)"
    )
    out_levels: tuple[str, ...] = ("c3", "c4", "c5")
    pretrained: bool = Field(False, description="load torchvision ImageNet weights from torch's cache if present")
    zero_init_residual: bool = Field(
        False, description="zero-initialise the last BatchNorm weight of each residual block (bn3 / BasicBlock "
                           "bn2), so blocks start as identities; mmdet's default (True) when not pretrained")

    @field_validator("out_levels")
    @classmethod
    def _known_levels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [lv for lv in value if lv not in RESNET_STRIDES]
        if bad or not value:
            raise ValueError(f"levels must be among {', '.join(RESNET_STRIDES)}; unknown: {bad or 'none given'}")
        return value

    def output_strides(self) -> dict[str, int]:
        return {lv: RESNET_STRIDES[lv] for lv in self.out_levels}


class FPNConfig(NeckConfig):
    """Feature pyramid over c3..c5 with extra levels P6/P7 (from C5 or P5)."""

    type: Literal["fpn"] = "fpn"
    out_channels: int = Field(256, gt=0)
    in_levels: tuple[str, ...] = ("c3", "c4", "c5")
    num_extra: int = Field(2, ge=0, description="extra stride-2 levels after the last input level (P6, P7)")
    extra_source: Literal["c5", "p5"] = "p5"
    extra_relu: bool = Field(True, description="ReLU before each extra level after the first (RetinaNet/FCOS)")
    norm: Literal["none", "gn"] = "none"
    extra_norm: bool = Field(False, description="GroupNorm(32) after each extra-level conv (then bias-free), as "
                             "the LSNet reference FPN (norm_cfg applies to P6/P7 too); needs norm: gn")

    def output_strides(self, inputs: dict[str, int]) -> dict[str, int] | None:
        """``c3`` -> ``p3`` at the same stride, then ``num_extra`` levels, each at twice the stride."""
        if any(lv not in inputs for lv in self.in_levels) or not self.in_levels:
            return None
        out = {f"p{lv[1:]}": inputs[lv] for lv in self.in_levels}
        number, stride = int(self.in_levels[-1][1:]), inputs[self.in_levels[-1]]
        for i in range(1, self.num_extra + 1):
            out[f"p{number + i}"] = stride * 2**i
        return out


class FocalLossConfig(LossConfig):
    """Sigmoid focal loss (Lin et al. 2017): sum / avg_factor (the number of positives), or the mean without one."""

    type: Literal["focal"] = "focal"
    alpha: float = Field(0.25, ge=-1, le=1, description="negative disables alpha weighting")
    gamma: float = Field(2.0, ge=0)
    loss_weight: float = Field(1.0, ge=0)


class GIoULossConfig(LossConfig):
    type: Literal["giou"] = "giou"
    loss_weight: float = Field(1.0, ge=0)
    eps: float = 1e-7


class L1LossConfig(LossConfig):
    type: Literal["l1"] = "l1"
    loss_weight: float = Field(1.0, ge=0)


class SmoothL1LossConfig(LossConfig):
    type: Literal["smooth_l1"] = "smooth_l1"
    beta: float = Field(1.0 / 9, ge=0)
    loss_weight: float = Field(1.0, ge=0)


class FCOSHeadConfig(HeadConfig):
    """FCOS (Tian et al. 2019) over torchvision's FCOSHead and its loss; the one-stage baseline."""

    type: Literal["fcos"] = "fcos"
    in_levels: tuple[str, ...] = ("p3", "p4", "p5", "p6", "p7")
    num_convs: int = Field(4, ge=0)
    center_sampling_radius: float = Field(1.5, gt=0)
    score_thresh: float = Field(0.05, ge=0, le=1)
    nms_thresh: float = Field(0.6, gt=0, le=1)
    topk_candidates: int = Field(1000, gt=0)
    detections_per_img: int = Field(100, gt=0)
