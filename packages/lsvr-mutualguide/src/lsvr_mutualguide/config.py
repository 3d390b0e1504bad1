"""Config models of the mutualguide components (torch-free: imported by ``lsvr plugins`` / ``validate``).

Defaults follow the v1 ("ACCV") reference of ``shared/specs/mutualguide.md``; section numbers below refer to it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lsvr_core.api import AssignerConfig, BackboneConfig, FocalLossConfig, HeadConfig, LossConfig, NeckConfig, Slot

_PRETRAINED = "torchvision ImageNet weights from torch's hub cache (never downloaded)"

# --- backbones (§2 "Backbones": each returns c3 at stride 8 and c4 at stride 16) ---------------------------


class _TwoLevelConfig(BackboneConfig):
    def output_strides(self) -> dict[str, int]:
        return {"c3": 8, "c4": 16}


class VGG16BNConfig(_TwoLevelConfig):
    """torchvision VGG16-BN: conv4_3 (512 @ 8) and pool4 + conv5_x (512 @ 16)."""

    type: Literal["vgg16_bn"] = "vgg16_bn"
    pretrained: bool = Field(False, description=_PRETRAINED)


class ResNetMGConfig(_TwoLevelConfig):
    """torchvision ResNet without the stem max-pool: layer3 @ 8 and layer4 @ 16."""

    type: Literal["resnet_mg"] = "resnet_mg"
    depth: Literal[18, 34, 50] = 18
    pretrained: bool = Field(False, description=_PRETRAINED)


class ShuffleNetV2Config(_TwoLevelConfig):
    """torchvision ShuffleNetV2 without the stem max-pool: stage3 @ 8 and stage4 @ 16."""

    type: Literal["shufflenet_v2"] = "shufflenet_v2"
    width: Literal["0.5", "1.0", "1.5", "2.0"] = "1.0"
    pretrained: bool = Field(False, description=_PRETRAINED)


class RepVGGConfig(_TwoLevelConfig):
    """RepVGG-A2 with stage0 at stride 1: stage3 (384 @ 8) and stage4 (1408 @ 16), re-parameterisable."""

    type: Literal["repvgg_a2"] = "repvgg_a2"
    deploy: bool = Field(False, description="build fused single-3x3 blocks (inference form)")
    weights: str | None = Field(None, description="path of the official RepVGG-A2-train.pth checkpoint")


class CSPDarknetConfig(BackboneConfig):
    """YOLOX CSPDarknet (v2, §7): SiLU, Focus stem, c4 @ 16 and c5 @ 32."""

    type: Literal["cspdarknet"] = "cspdarknet"
    width: Literal["0.5", "0.75", "1.0"] = Field("0.5", description="variant: (depth, width) = (0.33, 0.5), "
                                                 "(0.67, 0.75) or (1.0, 1.0)")
    weights: str | None = Field(None, description="YOLOX checkpoint (yolox_s / m / l .pth) whose backbone to load")
    freeze_stem: bool = Field(True, description="with weights: freeze stem and dark2 parameters (the reference)")

    def output_strides(self) -> dict[str, int]:
        return {"c4": 16, "c5": 32}


# --- necks (§2 "Necks") ------------------------------------------------------------------------------------


class _MGNeckConfig(NeckConfig):
    out_channels: int = Field(256, gt=0, description="fea_channel: 256, or 128 for ShuffleNet (§2)")
    num_levels: int = Field(4, ge=2, le=6, description="pyramid levels L: 4 below 512 px, 5 at 512 (§2)")
    in_levels: tuple[str, str] = Field(("c3", "c4"), description="backbone maps at strides 8 and 16")

    def output_strides(self, inputs: dict[str, int]) -> dict[str, int] | None:
        """``num_levels`` levels from the first input's stride, doubling: p3, p4, ... for stride 8."""
        if self.in_levels[0] not in inputs:
            return None
        strides = [inputs[self.in_levels[0]] * 2**k for k in range(self.num_levels)]
        return {f"p{s.bit_length() - 1}": s for s in strides}


class SSDNeckConfig(_MGNeckConfig):
    """FSSD-style fusion of the stride-8/16 maps, then stride-2 convs (``ssd``)."""

    type: Literal["ssd"] = "ssd"


class FPNMGNeckConfig(_MGNeckConfig):
    """The ssd pyramid, then 1x1 laterals, a top-down add and a 3x3 per level (the v1 ``fpn``)."""

    type: Literal["fpn_mg"] = "fpn_mg"


class PAFPNNeckConfig(_MGNeckConfig):
    """Context module, stride-2 pyramid, top-down and bottom-up paths (``pafpn``)."""

    type: Literal["pafpn"] = "pafpn"


def _pyramid(first: str, num_levels: int, inputs: dict[str, int]) -> dict[str, int] | None:
    """``num_levels`` levels from ``first``'s stride, doubling, named by log2(stride) (what ``lsvr validate``
    checks the head's levels against)."""
    if first not in inputs:
        return None
    return {f"p{(inputs[first] * 2**k).bit_length() - 1}": inputs[first] * 2**k for k in range(num_levels)}


class RFBNeckConfig(NeckConfig):
    """The RFBNet pyramid of the first commit (``rfb``): reduce + RFB-a at stride 8, RFB blocks on c4 and below."""

    type: Literal["rfb"] = "rfb"
    num_levels: int = Field(4, ge=2, le=5, description="pyramid levels L: 4 at 320 px, 5 at 512 (§2)")
    in_levels: tuple[str, str] = Field(("c3", "c4"), description="backbone maps at strides 8 and 16")
    reduce_channels: int = Field(256, gt=0, description="width of each 1x1 reduction before the RFB-a block")
    level_channels: tuple[int, ...] = Field(
        (512, 512, 512, 256, 256), description="output channels of each level, finest first (the reference's)"
    )

    def output_strides(self, inputs: dict[str, int]) -> dict[str, int] | None:
        return _pyramid(self.in_levels[0], self.num_levels, inputs)


class PAFPNV2NeckConfig(NeckConfig):
    """The v2 (HEAD) PAFPN: SiLU context module, bilinear top-down, bottom-up (§7 "Architecture")."""

    type: Literal["pafpn_v2"] = "pafpn_v2"
    out_channels: int = Field(256, gt=0, description="fea_channel: 256 (128 for the depthwise variants)")
    num_levels: int = Field(3, ge=2, le=6, description="3 levels up to 640 px, 4 above (strides 16, 32, 64, 128)")
    in_levels: tuple[str, str] = Field(("c4", "c5"), description="backbone maps at strides 16 and 32")

    def output_strides(self, inputs: dict[str, int]) -> dict[str, int] | None:
        return _pyramid(self.in_levels[0], self.num_levels, inputs)


# --- assigners (§3, §7) ------------------------------------------------------------------------------------


class MutualGuideAssignerConfig(AssignerConfig):
    """Mutual guidance: classification positives by predicted-box IoU, regression by amplified anchor IoU."""

    type: Literal["mutual_guide"] = "mutual_guide"
    variant: Literal["v1", "v2"] = Field("v1", description="v1: ACCV rule (§3); v2: dynamic top-k, soft labels (§7)")
    pos_iou: float = Field(0.5, gt=0, le=1, description="v1: anchor IoU that fixes n_pos per object")
    ignore_iou: float = Field(0.4, gt=0, le=1, description="v1: anchor IoU that fixes n_ign per object")
    sigma: float = Field(2.0, gt=0, description="amplification temperature sigma")
    topk: int = Field(15, gt=0, description="v2: candidates summed for the dynamic k")
    crowd_ioa: float = Field(0.5, gt=0, le=1, description="negatives this much inside a crowd box are ignored")


class IoUAssignerConfig(AssignerConfig):
    """Baseline max-IoU matching (MG off): the same positives for both tasks (§3 "Baseline")."""

    type: Literal["iou"] = "iou"
    pos_iou: float = Field(0.5, gt=0, le=1)
    ignore_iou: float = Field(0.4, gt=0, le=1)
    crowd_ioa: float = Field(0.5, gt=0, le=1)


# --- losses (§4, §7) ---------------------------------------------------------------------------------------


class BalancedL1LossConfig(LossConfig):
    """Balanced L1 (Libra R-CNN) on encoded offsets."""

    type: Literal["balanced_l1"] = "balanced_l1"
    alpha: float = Field(0.5, gt=0)
    gamma: float = Field(1.5, gt=0)
    beta: float = Field(0.11, gt=0)
    loss_weight: float = Field(1.0, ge=0)


class VarifocalPolyLossConfig(LossConfig):
    """v2 classification loss: BCE to a soft IoU target, weighted q / 0.75 p^2, plus a Poly-1 term (§7)."""

    type: Literal["varifocal_poly"] = "varifocal_poly"
    neg_alpha: float = Field(0.75, ge=0)
    gamma: float = Field(2.0, ge=0)
    poly_eps: float = Field(1.0, ge=0)
    loss_weight: float = Field(2.0, ge=0)


class SIoULossConfig(LossConfig):
    """SIoU loss (Gevorgyan 2022) on decoded boxes; v2 regression adds it with weight 2 (§7)."""

    type: Literal["siou"] = "siou"
    theta: float = Field(4.0, gt=0)
    loss_weight: float = Field(2.0, ge=0)


class MixUpConfig(BaseModel):
    """MixUp of training batches (§5, a192256): Beta(alpha, alpha) weights, a batch permutation, mixed losses."""

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(1.0, gt=0, description="Beta(alpha, alpha) of the mixing weight")
    until: float = Field(0.8, gt=0, le=1, description="fraction of the training iterations that use MixUp")


# --- head (§2 "Head", §6 inference) ------------------------------------------------------------------------


class MutualGuideHeadConfig(HeadConfig):
    """Per-level 3x3 conv box and class predictors over 6 anchors per location, with an assigner and losses."""

    type: Literal["mutual_guide"] = "mutual_guide"
    anchor_base: float = Field(24.0, gt=0, description="base anchor size of the first level, pixels (§2)")
    variances: tuple[float, float] = Field((0.1, 0.2), description="SSD box-coding variances (centre, size)")
    prior_prob: float = Field(0.01, gt=0, lt=1)
    # nested slots and the interface each calls (lsvr_core.hookspecs): the resolver offers only what fits
    assigner: Annotated[AssignerConfig, Slot("anchor_assigner")] = MutualGuideAssignerConfig()
    loss_cls: Annotated[LossConfig, Slot("soft_classification_loss")] = FocalLossConfig(alpha=0.25, gamma=1.0)
    loss_bbox: Annotated[LossConfig, Slot("regression_loss")] = BalancedL1LossConfig()
    loss_iou: Annotated[LossConfig, Slot("box_loss")] | None = Field(
        None, description="extra decoded-box loss (v2: siou)")
    score_thresh: float = Field(0.005, ge=0, le=1)
    nms_thresh: float = Field(0.5, gt=0, le=1)
    detections_per_img: int = Field(300, gt=0)
    pre_nms_topk: int | None = Field(
        1000, gt=0, description="per-class candidates kept before NMS (None: all above score_thresh, as §6)"
    )
    mixup: MixUpConfig | None = Field(None, description="MixUp of the training batches (a192256 --mixup)")
    tower: bool = Field(False, description="v2 predictors: 3x3 conv-BN-SiLU then a 1x1 conv (v1: one 3x3 conv)")
    nms: Literal["class_wise", "agnostic"] = Field(
        "class_wise", description="class_wise (v1, §6); agnostic (v2, §7): anchors whose best score > "
        "score_thresh, NMS on that score over all classes, then every class above score_thresh of a kept box",
    )
