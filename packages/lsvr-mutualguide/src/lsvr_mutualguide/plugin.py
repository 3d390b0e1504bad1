"""The mutualguide plugin: registers its components and recipes with lsvr (torch-free)."""

from __future__ import annotations

from lsvr_core.api import ComponentSpec, ConverterSpec, RecipeSpec, hookimpl, recipes_from_dir
from lsvr_mutualguide import config as c
from lsvr_mutualguide.rows import summaries

_P = "lsvr_mutualguide"


@hookimpl
def lsvr_backbones() -> list[ComponentSpec]:
    return [
        ComponentSpec("backbone", "vgg16_bn", c.VGG16BNConfig, f"{_P}.backbones:build_vgg16_bn",
                      "torchvision VGG16-BN: conv4_3 @ 8, pool4 + conv5 @ 16 (MutualGuide)"),
        ComponentSpec("backbone", "resnet_mg", c.ResNetMGConfig, f"{_P}.backbones:build_resnet_mg",
                      "torchvision ResNet without the stem max-pool: layer3 @ 8, layer4 @ 16 (MutualGuide)"),
        ComponentSpec("backbone", "shufflenet_v2", c.ShuffleNetV2Config, f"{_P}.backbones:build_shufflenet_v2",
                      "torchvision ShuffleNetV2 without the max-pool: stage3 @ 8, stage4 @ 16 (MutualGuide)"),
        ComponentSpec("backbone", "repvgg_a2", c.RepVGGConfig, f"{_P}.repvgg:build_repvgg_a2",
                      "RepVGG-A2, stage0 at stride 1, train/deploy re-parameterisation (MutualGuide)"),
        ComponentSpec("backbone", "cspdarknet", c.CSPDarknetConfig, f"{_P}.cspdarknet:build_cspdarknet",
                      "YOLOX CSPDarknet 0.5 / 0.75 / 1.0 (SiLU): c4 @ 16, c5 @ 32 (MutualGuide v2)"),
    ]


@hookimpl
def lsvr_necks() -> list[ComponentSpec]:
    return [
        ComponentSpec("neck", "ssd", c.SSDNeckConfig, f"{_P}.necks:build_ssd",
                      "FSSD-style fusion of stride-8/16 maps plus stride-2 levels (MutualGuide)"),
        ComponentSpec("neck", "fpn_mg", c.FPNMGNeckConfig, f"{_P}.necks:build_fpn_mg",
                      "ssd pyramid + laterals, top-down add, 3x3 per level (MutualGuide 'fpn')"),
        ComponentSpec("neck", "pafpn", c.PAFPNNeckConfig, f"{_P}.necks:build_pafpn",
                      "context module, top-down and bottom-up paths (MutualGuide)"),
        ComponentSpec("neck", "rfb", c.RFBNeckConfig, f"{_P}.rfb:build_rfb",
                      "RFBNet pyramid: RFB-a on fused c3/c4, RFB blocks to stride 64/128 (MutualGuide first commit)"),
        ComponentSpec("neck", "pafpn_v2", c.PAFPNV2NeckConfig, f"{_P}.neck_v2:build_pafpn_v2",
                      "MutualGuide v2 PAFPN: SiLU context module, bilinear top-down, bottom-up (strides 16-64)"),
    ]


@hookimpl
def lsvr_heads() -> list[ComponentSpec]:
    return [
        ComponentSpec("head", "mutual_guide", c.MutualGuideHeadConfig, f"{_P}.head:build_mutual_guide_head",
                      "anchor head (6 anchors/location, SSD coding) trained with mutual guidance", ("bbox",)),
    ]


@hookimpl
def lsvr_assigners() -> list[ComponentSpec]:
    return [
        ComponentSpec("assigner", "mutual_guide", c.MutualGuideAssignerConfig, f"{_P}.assigners:build_mutual_guide",
                      "mutual guidance: cls by predicted-box IoU, reg by score-amplified anchor IoU (v1/v2)",
                      implements=("anchor_assigner",)),
        ComponentSpec("assigner", "iou", c.IoUAssignerConfig, f"{_P}.assigners:build_iou",
                      "max-IoU anchor matching 0.5/0.4 with forced best anchor (MutualGuide baseline)",
                      implements=("anchor_assigner",)),
    ]


@hookimpl
def lsvr_losses() -> list[ComponentSpec]:
    return [
        ComponentSpec("loss", "balanced_l1", c.BalancedL1LossConfig, f"{_P}.losses:build_balanced_l1",
                      "Balanced L1 (Libra R-CNN)", implements=("regression_loss",)),
        ComponentSpec("loss", "varifocal_poly", c.VarifocalPolyLossConfig, f"{_P}.losses:build_varifocal_poly",
                      "MutualGuide v2 soft-label BCE (Varifocal-like) plus a Poly-1 term",
                      implements=("soft_classification_loss",)),
        ComponentSpec("loss", "siou", c.SIoULossConfig, f"{_P}.losses:build_siou", "SIoU box loss",
                      implements=("box_loss",)),
    ]


@hookimpl
def lsvr_weight_converters() -> list[ConverterSpec]:
    return [ConverterSpec("mutualguide-v1", f"{_P}.convert:convert_mutualguide_v1",
                          "MutualGuide v1 released VOC/COCO checkpoints (a6fd618 Detector; a24bbe4 RFBNet)"),
            ConverterSpec("mutualguide-v2", f"{_P}.convert:convert_mutualguide_v2",
                          "MutualGuide v2 (HEAD) CSPDarknet + PAFPN checkpoints (dist.* distillation layers left out)")]


@hookimpl
def lsvr_recipes() -> list[RecipeSpec]:
    return recipes_from_dir("mutualguide", "lsvr_mutualguide.recipes", summaries())
