"""The lsnet plugin: registers the LSNet head, its assigners, the cross-IoU loss and the recipes (torch-free)."""

from __future__ import annotations

from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import ComponentSpec, RecipeSpec, recipes_from_dir

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
                      "one nearest grid point per object on its scale-selected level (LSNet init stage)"),
        ComponentSpec("assigner", "atss", c.ATSSAssignerConfig, f"{_P}.assigners.atss:build_atss",
                      "ATSS top-k per level over predicted boxes (LSNet refine stage and classifier)"),
    ]


@hookimpl
def lsvr_losses() -> list[ComponentSpec]:
    return [
        ComponentSpec("loss", "cross_iou", c.CrossIoULossConfig, f"{_P}.losses.cross_iou:build_cross_iou",
                      "cross-IoU of (up, down, left, right) landmark vectors: bbox, polygon, keypoint"),
    ]


_SUMMARIES = {
    "demo": "LSNet bbox on the built-in synthetic shapes, ResNet-18, CPU: the default of a bare `lsvr run`",
}


@hookimpl
def lsvr_recipes() -> list[RecipeSpec]:
    return recipes_from_dir("lsnet", f"{_P}.recipes", _SUMMARIES, {"demo": 10})
