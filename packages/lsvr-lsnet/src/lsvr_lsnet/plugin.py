"""The lsnet plugin: registers the LSNet head, its assigners, the cross-IoU loss and the recipes (torch-free)."""

from __future__ import annotations

from lsvr_core.api import ComponentSpec, RecipeSpec, hookimpl, recipes_from_dir
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
                      "one nearest grid point per object on its scale-selected level (LSNet init stage)",
                      implements=("point_assigner",)),
        ComponentSpec("assigner", "atss", c.ATSSAssignerConfig, f"{_P}.assigners.atss:build_atss",
                      "ATSS top-k per level over predicted boxes (LSNet refine stage and classifier)",
                      implements=("point_box_assigner",)),
        ComponentSpec("assigner", "point_hm", c.PointHeatmapAssignerConfig, f"{_P}.assigners.point_hm:build_point_hm",
                      "corner heatmaps: nearest point per box corner and level + Gaussian bumps (LSNet CPV)",
                      implements=("corner_heatmap_assigner",)),
    ]


@hookimpl
def lsvr_losses() -> list[ComponentSpec]:
    return [
        ComponentSpec("loss", "cross_iou", c.CrossIoULossConfig, f"{_P}.losses.cross_iou:build_cross_iou",
                      "cross-IoU of (up, down, left, right) landmark vectors: bbox, polygon, keypoint",
                      implements=("landmark_loss",)),
        ComponentSpec("loss", "gaussian_focal", c.GaussianFocalLossConfig, f"{_P}.losses.corner:build_gaussian_focal",
                      "CornerNet focal loss on Gaussian heatmap targets (LSNet CPV corners)",
                      implements=("corner_heatmap_loss",)),
        ComponentSpec("loss", "sep_focal", c.SEPFocalLossConfig, f"{_P}.losses.corner:build_sep_focal",
                      "focal loss with separately normalised positives / negatives (LSNet CPV semantic maps)",
                      implements=("semantic_loss",)),
    ]


_SUMMARIES = {
    "demo": "LSNet bbox on the built-in synthetic shapes, ResNet-18, CPU: the default of a bare `lsvr run`",
    "coco_mini_bbox": "LSNet bbox, short CPU run on ../shared/data/coco_mini (train2017 -> val2017)",
    "coco_mini_segm": "LSNet contours (segm), short CPU run on ../shared/data/coco_mini",
    "coco_mini_pose": "LSNet keypoints (obj-box), short CPU run on ../shared/data/coco_mini",
    "coco_mini_cpv": "LSNet-CPV (corner point verification) bbox, short CPU run on ../shared/data/coco_mini",
    "bbox_r50_1x_coco": "reference: LSNet bbox R-50, 1x (no README row)",
    "bbox_r50_mstrain_2x_coco": "README bbox row 'LSNet R-50' (MS train 2x): 44.8 AP test-dev",
    "bbox_x101_mstrain_2x_coco": "README bbox row 'LSNet X-101-64x4d': 48.2 AP test-dev",
    "bbox_x101_dconv_c3-c5_mstrain_2x_coco": "README bbox row 'LSNet X-101-64x4d-DCN': 49.6 AP test-dev",
    "bbox_cpv_x101_dconv_c3-c5_mstrain_2x_coco": "README bbox row 'LSNet-CPV X-101-64x4d-DCN': 50.4 AP test-dev",
    "bbox_cpv_res2_101_dconv_c3-c5_mstrain_2x_coco": "README bbox row 'LSNet-CPV R2-101-DCN': 51.1 AP test-dev",
    "bbox_cpv_res2_101_dconv_c3-c5_mstrain_2x_coco_mstest":
        "README bbox row 'LSNet-CPV* R2-101-DCN' (multi-scale test): 53.5 AP test-dev",
    "segm_r50_1x_coco": "reference: LSNet contours R-50, 1x (no README row)",
    "segm_r50_mstrain_2x_coco": "reference: LSNet contours R-50, MS train 2x (no README row)",
    "segm_x101_mstrain_30e_coco": "reference: LSNet contours X-101, MS train 30e (no README row)",
    "segm_x101_dconv_c3-c5_mstrain_30e_coco": "README segm row 'LSNet X-101-64x4d-DCN': 37.6 mask AP test-dev",
    "segm_x101_dconv_c3-c5_mstrain_30e_coco_mstest":
        "README segm row 'LSNet* X-101-64x4d-DCN' (multi-scale test): 39.7 mask AP test-dev",
    "segm_res2_101_dconv_c3-c5_mstrain_30e_coco": "README segm row 'LSNet R2-101-DCN': 38.0 mask AP test-dev",
    "segm_res2_101_dconv_c3-c5_mstrain_30e_coco_mstest":
        "README segm row 'LSNet* R2-101-DCN' (multi-scale test): 40.2 mask AP test-dev",
    "pose_bbox_r50_1x_coco": "reference: LSNet keypoints obj-box R-50, 1x (no README row)",
    "pose_bbox_r50_mstrain_2x_coco": "reference: LSNet keypoints obj-box R-50, MS train 2x (no README row)",
    "pose_bbox_x101_dconv_c3-c5_mstrain_2x_coco":
        "README keypoint row 'LSNet w/ obj-box X-101-64x4d-DCN' (60 epochs): 55.7 keypoint AP test-dev",
    "pose_kbox_x101_dconv_c3-c5_mstrain_2x_coco":
        "README keypoint row 'LSNet w/ kps-box X-101-64x4d-DCN': 59.0 keypoint AP test-dev",
}


@hookimpl
def lsvr_recipes() -> list[RecipeSpec]:
    return recipes_from_dir("lsnet", f"{_P}.recipes", _SUMMARIES, {"demo": 10})
