"""The lesa plugin: registers the LESA backbones and recipes with lsvr (torch-free)."""

from __future__ import annotations

from lsvr_core.api import ComponentSpec, ConverterSpec, RecipeSpec, hookimpl, recipes_from_dir
from lsvr_lesa.config import LESAR50Config, LESAWRN50Config

_B = "lsvr_lesa.backbone"


@hookimpl
def lsvr_backbones() -> list[ComponentSpec]:
    return [
        ComponentSpec("backbone", "lesa_r50", LESAR50Config, f"{_B}:build_lesa_r50",
                      "LESA-ResNet-50: locally enhanced self-attention in c4/c5, DCN elsewhere (any input size)"),
        ComponentSpec("backbone", "lesa_wrn50", LESAWRN50Config, f"{_B}:build_lesa_wrn50",
                      "LESA-WRN-50-2: wide LESA-ResNet-50 (double bottleneck width)"),
    ]


@hookimpl
def lsvr_weight_converters() -> list[ConverterSpec]:
    _C = "lsvr_lesa.convert"
    return [
        ConverterSpec("lesa-imagenet", f"{_C}:convert_imagenet",
                      "ImageNet-pretrained LESA-ResNet50 / LESA-WRN50 (Chenglin-Yang/LESA_classification; "
                      "classification or detection_qr BN shapes) -> backbone.*"),
        ConverterSpec("lesa-mask-rcnn", f"{_C}:convert_mask_rcnn",
                      "LESA-R50 Mask R-CNN (Chenglin-Yang/LESA_detection, mmdet 2.11) -> lesa_r50 + fpn + mask_rcnn "
                      "(maxpool_last_level)"),
        ConverterSpec("lesa-htc", f"{_C}:convert_htc",
                      "LESA-WRN50 HTC (Chenglin-Yang/LESA_detection, mmdet 2.11) -> lesa_wrn50 + fpn + htc"),
    ]


@hookimpl
def lsvr_recipes() -> list[RecipeSpec]:
    return recipes_from_dir("lesa", "lsvr_lesa.recipes", {
        "mask_rcnn_lesa_r50_1024_20e_coco": "README row LESA-R50 Mask R-CNN (44.2 box / 39.6 mask test-dev): "
                                            "DCN, mmdet options, fixed 1024x1024, 20 epochs",
        "htc_lesa_wrn50_1280_20e_coco": "README row LESA-WRN50 HTC (50.5 box / 44.4 mask test-dev): DCN, "
                                        "semantic branch, fixed 1280x1280, 4x1 images, 20 epochs",
        "coco_mini_htc": "LESA-R50 HTC on ../shared/data/coco_mini, short CPU-sized schedule (no README row)",
        "mask_rcnn_lesa_wrn50_1280_20e_coco": "LESA-WRN50 Mask R-CNN at the HTC row's settings (no README row; "
                                              "the row is htc_lesa_wrn50_1280_20e_coco)",
        "mask_rcnn_lesa_r50_keep_ratio_20e_coco": "LESA-R50 Mask R-CNN with aspect-preserving resize",
        "coco_mini_mask_rcnn": "LESA-R50 Mask R-CNN on ../shared/data/coco_mini, short CPU-sized schedule",
    })
