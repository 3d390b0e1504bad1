"""The lsnet plugin: registers the LSNet head, its assigners, the cross-IoU loss and the recipes (torch-free)."""

from __future__ import annotations

from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import ComponentSpec, RecipeSpec, recipes_from_dir

from lsvr_lsnet import config as c

_P = "lsvr_lsnet"


@hookimpl
def lsvr_backbones() -> list[ComponentSpec]:
    return [
        ComponentSpec("backbone", "res2net", c.Res2NetConfig, f"{_P}.backbones.res2net:build_res2net",
                      "Res2Net v1d (26w x 4s) with optional DCNv2, mmdetection layout (LSNet R2-101 rows)"),
    ]


@hookimpl
def lsvr_heads() -> list[ComponentSpec]:
    return [
        ComponentSpec("head", "lsnet", c.LSNetHeadConfig, f"{_P}.head:build_lsnet_head",
                      "LSNet: anchor point + landmarks with cross-IoU loss and pyramid deformable sampling", c.TASKS),
        ComponentSpec("head", "lscpv", c.LSCPVHeadConfig, f"{_P}.cpv.head:build_lscpv_head",
                      "LSNet bbox with corner point verification (corner pooling, heatmaps, corner snapping)",
                      ("bbox",)),
    ]


@hookimpl
def lsvr_assigners() -> list[ComponentSpec]:
    return [
        ComponentSpec("assigner", "centroid", c.CentroidAssignerConfig, f"{_P}.assigners.centroid:build_centroid",
                      "one nearest grid point per object on its scale-selected level (LSNet init stage)"),
        ComponentSpec("assigner", "atss", c.ATSSAssignerConfig, f"{_P}.assigners.atss:build_atss",
                      "ATSS top-k per level over predicted boxes (LSNet refine stage and classifier)"),
        ComponentSpec("assigner", "point_hm", c.PointHeatmapAssignerConfig, f"{_P}.assigners.point_hm:build_point_hm",
                      "corner heatmaps: nearest point per box corner and level + Gaussian bumps (LSNet CPV)"),
    ]


@hookimpl
def lsvr_losses() -> list[ComponentSpec]:
    return [
        ComponentSpec("loss", "cross_iou", c.CrossIoULossConfig, f"{_P}.losses.cross_iou:build_cross_iou",
                      "cross-IoU of (up, down, left, right) landmark vectors: bbox, polygon, keypoint"),
        ComponentSpec("loss", "gaussian_focal", c.GaussianFocalLossConfig, f"{_P}.losses.corner:build_gaussian_focal",
                      "CornerNet focal loss on Gaussian heatmap targets (LSNet CPV corners)"),
        ComponentSpec("loss", "sep_focal", c.SEPFocalLossConfig, f"{_P}.losses.corner:build_sep_focal",
                      "focal loss with separately normalised positives / negatives (LSNet CPV semantic maps)"),
    ]


_SUMMARIES = {
    "demo": "LSNet bbox on the built-in synthetic shapes, ResNet-18, CPU: the default of a bare `lsvr run`",
    "coco_mini_bbox": "LSNet bbox, short CPU run on ../shared/data/coco_mini (train2017 -> val2017)",
    "coco_mini_segm": "LSNet contours (segm), short CPU run on ../shared/data/coco_mini",
    "coco_mini_pose": "LSNet keypoints (obj-box), short CPU run on ../shared/data/coco_mini",
    "coco_mini_cpv": "LSNet-CPV (corner point verification) bbox, short CPU run on ../shared/data/coco_mini",
    "bbox_r50_1x_coco": "reference: LSNet bbox R-50 FPN, 1x (12 epochs) on COCO",
    "bbox_r50_mstrain_2x_coco": "reference: LSNet bbox R-50, multi-scale train, 2x",
    "bbox_x101_mstrain_2x_coco": "reference: LSNet bbox ResNeXt-101 64x4d, multi-scale 2x",
    "bbox_x101_dconv_c3-c5_mstrain_2x_coco": "reference: LSNet bbox X-101 + DCNv2 C3-C5, multi-scale 2x",
    "bbox_cpv_x101_dconv_c3-c5_mstrain_2x_coco": "reference: LSNet-CPV bbox X-101 + DCNv2 C3-C5, multi-scale 2x",
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
