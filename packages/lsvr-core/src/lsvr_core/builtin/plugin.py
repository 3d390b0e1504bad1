"""lsvr-core's built-in plugin: registers components through the same hooks as third-party plugins."""

from __future__ import annotations

from lsvr_core.builtin import configs as c
from lsvr_core.builtin.htc_config import HTCHeadConfig
from lsvr_core.builtin.mask_rcnn_config import MaskRCNNHeadConfig
from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import ComponentSpec, RecipeSpec, recipes_from_dir

_M = "lsvr_core.models"


@hookimpl
def lsvr_backbones() -> list[ComponentSpec]:
    return [
        ComponentSpec("backbone", "resnet", c.ResNetConfig, f"{_M}.resnet:build_resnet",
                      "torchvision ResNet-18/34/50/101/152 and ResNeXt, frozen stages/BN, optional DCNv2"),
    ]


@hookimpl
def lsvr_necks() -> list[ComponentSpec]:
    return [
        ComponentSpec("neck", "fpn", c.FPNConfig, f"{_M}.fpn:build_fpn",
                      "feature pyramid network with P6/P7 extra levels, optional GroupNorm"),
    ]


@hookimpl
def lsvr_heads() -> list[ComponentSpec]:
    return [
        ComponentSpec("head", "fcos", c.FCOSHeadConfig, f"{_M}.fcos:build_fcos_head",
                      "FCOS over torchvision's head and loss: the one-stage baseline", ("bbox",)),
        ComponentSpec("head", "mask_rcnn", MaskRCNNHeadConfig, f"{_M}.mask_rcnn:build_mask_rcnn_head",
                      "Mask R-CNN (torchvision RPN, RoI box and mask heads) over any backbone + FPN",
                      ("bbox", "segm")),
        ComponentSpec("head", "htc", HTCHeadConfig, f"{_M}.htc.head:build_htc_head",
                      "Hybrid Task Cascade: 3 cascade box stages, interleaved mask branches with information "
                      "flow, fused semantic branch (mmdet 2.x defaults)", ("bbox", "segm")),
    ]


@hookimpl
def lsvr_losses() -> list[ComponentSpec]:
    return [
        ComponentSpec("loss", "focal", c.FocalLossConfig, f"{_M}.losses:build_focal", "sigmoid focal loss",
                      implements=("classification_loss", "soft_classification_loss")),
        ComponentSpec("loss", "giou", c.GIoULossConfig, f"{_M}.losses:build_giou", "generalised IoU loss",
                      implements=("box_loss",)),
        ComponentSpec("loss", "l1", c.L1LossConfig, f"{_M}.losses:build_l1", "L1 loss",
                      implements=("regression_loss",)),
        ComponentSpec("loss", "smooth_l1", c.SmoothL1LossConfig, f"{_M}.losses:build_smooth_l1", "smooth L1 loss",
                      implements=("regression_loss",)),
    ]


@hookimpl
def lsvr_recipes() -> list[RecipeSpec]:
    return recipes_from_dir(
        "lsvr", "lsvr_core.recipes",
        {"fcos_r18_synthetic": "FCOS baseline on the built-in synthetic set (CPU-friendly)",
         "fcos_r50_coco_mini": "FCOS baseline on ../shared/data/coco_mini, short schedule"},
        {"fcos_r18_synthetic": 1},
    )
