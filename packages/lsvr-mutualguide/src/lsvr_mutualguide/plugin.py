"""The mutualguide plugin: registers its components and recipes with lsvr (torch-free)."""

from __future__ import annotations

from lsvr_core.api import ComponentSpec, RecipeSpec, hookimpl, recipes_from_dir

from lsvr_mutualguide import config as c

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
                      "mutual guidance: cls by predicted-box IoU, reg by score-amplified anchor IoU (v1/v2)"),
        ComponentSpec("assigner", "iou", c.IoUAssignerConfig, f"{_P}.assigners:build_iou",
                      "max-IoU anchor matching 0.5/0.4 with forced best anchor (MutualGuide baseline)"),
    ]


@hookimpl
def lsvr_losses() -> list[ComponentSpec]:
    return [
        ComponentSpec("loss", "balanced_l1", c.BalancedL1LossConfig, f"{_P}.losses:build_balanced_l1",
                      "Balanced L1 (Libra R-CNN)"),
        ComponentSpec("loss", "varifocal_poly", c.VarifocalPolyLossConfig, f"{_P}.losses:build_varifocal_poly",
                      "MutualGuide v2 soft-label BCE (Varifocal-like) plus a Poly-1 term"),
        ComponentSpec("loss", "siou", c.SIoULossConfig, f"{_P}.losses:build_siou", "SIoU box loss"),
    ]


@hookimpl
def lsvr_recipes() -> list[RecipeSpec]:
    return recipes_from_dir("mutualguide", "lsvr_mutualguide.recipes", RECIPE_SUMMARIES)


RECIPE_SUMMARIES = {
    "voc0712_vgg16_fpn_320": "VGG16 + FPN, MG v1, VOC07+12 -> VOC07 test at 320, 250 epochs (spec §5)",
    "voc0712_vgg16_fpn_512": "VGG16 + FPN, MG v1, VOC07+12 at 512",
    "coco_vgg16_fpn_320": "VGG16 + FPN, MG v1, COCO train2017 -> val2017 at 320, 140 epochs",
    "coco_vgg16_fpn_512": "VGG16 + FPN, MG v1, COCO at 512",
    "voc_sample": "ShuffleNetV2 + FPN, MG v1, on ../shared/data/voc2012_sample (short CPU run)",
    "coco_mini": "ShuffleNetV2 + FPN, MG v1, on ../shared/data/coco_mini (short CPU run)",
}
