"""The lsnet plugin: registers the LSNet head, its assigners, the cross-IoU loss and the recipes (torch-free)."""

from __future__ import annotations

from lsvr_core.api import ComponentSpec, RecipeSpec, hookimpl, recipes_from_dir

from lsvr_lsnet import config as c

_P = "lsvr_lsnet"


@hookimpl
def lsvr_heads() -> list[ComponentSpec]:
    return [
        ComponentSpec("head", "lsnet", c.LSNetHeadConfig, f"{_P}.head:build_lsnet_head",
                      "LSNet: anchor point + landmarks with cross-IoU loss and pyramid deformable sampling", c.TASKS),
    ]


@hookimpl
def lsvr_assigners() -> list[ComponentSpec]:
    return [
        ComponentSpec("assigner", "centroid", c.CentroidAssignerConfig, f"{_P}.assigners.centroid:build_centroid",
                      "one nearest grid point per object on its scale-selected level (LSNet init stage)",
                      implements=("point_assigner",)),
        ComponentSpec("assigner", "atss", c.ATSSAssignerConfig, f"{_P}.assigners.atss:build_atss",
                      "ATSS top-k per level over predicted boxes (LSNet refine stage and classifier)",
                      implements=("point_box_assigner",)),
    ]


@hookimpl
def lsvr_losses() -> list[ComponentSpec]:
    return [
        ComponentSpec("loss", "cross_iou", c.CrossIoULossConfig, f"{_P}.losses.cross_iou:build_cross_iou",
                      "cross-IoU of (up, down, left, right) landmark vectors: bbox, polygon, keypoint",
                      implements=("landmark_loss",)),
    ]


_SUMMARIES = {
    "demo": "LSNet bbox on the built-in synthetic shapes, ResNet-18, CPU: the default of a bare `lsvr run`",
    "coco_mini_bbox": "LSNet bbox, short CPU run on ../shared/data/coco_mini (train2017 -> val2017)",
    "coco_mini_segm": "LSNet contours (segm), short CPU run on ../shared/data/coco_mini",
    "coco_mini_pose": "LSNet keypoints (obj-box), short CPU run on ../shared/data/coco_mini",
    "bbox_r50_1x_coco": "reference: LSNet bbox R-50 FPN, 1x (12 epochs) on COCO",
    "bbox_r50_mstrain_2x_coco": "reference: LSNet bbox R-50, multi-scale train, 2x",
    "bbox_x101_mstrain_2x_coco": "reference: LSNet bbox ResNeXt-101 64x4d, multi-scale 2x",
    "bbox_x101_dconv_c3-c5_mstrain_2x_coco": "reference: LSNet bbox X-101 + DCNv2 C3-C5, multi-scale 2x",
    "segm_r50_1x_coco": "reference: LSNet 36-point contours R-50, 1x",
    "segm_r50_mstrain_2x_coco": "reference: LSNet contours R-50, multi-scale 2x",
    "segm_x101_mstrain_30e_coco": "reference: LSNet contours X-101, multi-scale 30 epochs",
    "segm_x101_dconv_c3-c5_mstrain_30e_coco": "reference: LSNet contours X-101 + DCNv2, multi-scale 30 epochs",
    "pose_bbox_r50_1x_coco": "reference: LSNet keypoints with object boxes R-50, 1x",
    "pose_bbox_r50_mstrain_2x_coco": "reference: LSNet keypoints obj-box R-50, multi-scale 2x",
    "pose_bbox_x101_dconv_c3-c5_mstrain_2x_coco": "reference: LSNet keypoints obj-box X-101 + DCNv2 (60 epochs)",
    "pose_kbox_x101_dconv_c3-c5_mstrain_2x_coco": "reference: LSNet keypoints with keypoint boxes X-101 + DCNv2",
}


@hookimpl
def lsvr_recipes() -> list[RecipeSpec]:
    return recipes_from_dir("lsnet", f"{_P}.recipes", _SUMMARIES, {"demo": 10})
