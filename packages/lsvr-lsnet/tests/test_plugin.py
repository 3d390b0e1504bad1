"""Registration (torch-free), recipes and the default recipe of a bare ``lsvr run``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lsvr_core.config import load_config
from lsvr_core.plugins import get_plugin_manager


def test_registration_does_not_import_torch() -> None:
    code = ("import sys, lsvr_lsnet.plugin as p; p.lsvr_heads(); p.lsvr_assigners(); p.lsvr_losses(); "
            "p.lsvr_recipes(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_components_are_registered() -> None:
    manager = get_plugin_manager()
    assert manager.get("head", "lsnet").tasks == ("bbox", "segm", "pose_bbox", "pose_kbox")
    for kind, name in (("assigner", "centroid"), ("assigner", "atss"), ("loss", "cross_iou")):
        assert manager.get(kind, name).distribution == "lsvr-lsnet"


def test_demo_is_the_default_recipe() -> None:
    default = get_plugin_manager().default_recipe()
    assert default is not None and default.ref == "lsnet:demo"


LSNET_RECIPES = [r.ref for r in get_plugin_manager().recipes() if r.namespace == "lsnet"]


@pytest.mark.parametrize("ref", LSNET_RECIPES)
def test_recipes_validate(ref: str) -> None:
    cfg = load_config(ref, get_plugin_manager())
    assert cfg.model.head.type in ("lsnet", "lscpv")
    if ref.startswith("lsnet:coco_mini") or ref == "lsnet:demo":
        assert cfg.runtime.device == "cpu"
    if "coco_mini" in ref:
        assert str(cfg.data.root) == "../shared/data/coco_mini"
    elif ref != "lsnet:demo":
        assert str(cfg.data.root) == "data/coco"


def test_reference_hyperparameters() -> None:
    cfg = load_config("lsnet:pose_kbox_x101_dconv_c3-c5_mstrain_2x_coco", get_plugin_manager())
    assert cfg.task == "pose_kbox" and cfg.model.num_classes == 1
    assert cfg.model.backbone.depth == 101 and cfg.model.backbone.groups == 64
    assert cfg.model.backbone.dcn_stages == (False, True, True, True)
    assert (cfg.schedule.epochs, cfg.schedule.milestones) == (24, [12, 20])
    assert cfg.model.head.loss_refine.loss_type == "keypoint" and cfg.model.head.loss_box_refine.loss_weight == 0.2
    assert cfg.data.batch_size == 6 and cfg.data.train.pipeline.short_side_range == (480, 960)


REFERENCE_RECIPES = [r for r in LSNET_RECIPES if r != "lsnet:demo" and "coco_mini" not in r]


@pytest.mark.parametrize("ref", REFERENCE_RECIPES)
def test_reference_recipes_keep_reference_numerics(ref: str) -> None:
    """Reference recipes: fp32 (never `auto`), lr 0.01 per 16 images (pose 48) scaled to the actual total batch,
    GN in the FPN extra levels and the reference's compounding offset scaling (spec §2.1, §8, §11.1)."""
    cfg = load_config(ref, get_plugin_manager())
    assert cfg.runtime.precision == "fp32"
    assert cfg.optim.lr == 0.01 and cfg.optim.auto_scale_lr.enabled
    assert cfg.optim.auto_scale_lr.base_batch_size == (48 if cfg.task.startswith("pose") else 16)
    assert cfg.model.neck.norm == "gn" and cfg.model.neck.extra_norm
    assert cfg.model.head.faithful_offset_scaling


def test_coco_mini_recipes_do_not_rescale_their_lr() -> None:
    for ref in (r for r in LSNET_RECIPES if "coco_mini" in r):
        assert not load_config(ref, get_plugin_manager()).optim.auto_scale_lr.enabled, ref


# every row of the LSNet README tables (seed) -> the recipe that reproduces it and its published test-dev AP
README_ROWS = {
    "bbox LSNet R-50": ("bbox_r50_mstrain_2x_coco", "44.8"),
    "bbox LSNet X-101-64x4d": ("bbox_x101_mstrain_2x_coco", "48.2"),
    "bbox LSNet X-101-64x4d-DCN": ("bbox_x101_dconv_c3-c5_mstrain_2x_coco", "49.6"),
    "bbox LSNet-CPV X-101-64x4d-DCN": ("bbox_cpv_x101_dconv_c3-c5_mstrain_2x_coco", "50.4"),
    "bbox LSNet-CPV R2-101-DCN": ("bbox_cpv_res2_101_dconv_c3-c5_mstrain_2x_coco", "51.1"),
    "bbox LSNet-CPV* R2-101-DCN": ("bbox_cpv_res2_101_dconv_c3-c5_mstrain_2x_coco_mstest", "53.5"),
    "segm LSNet X-101-64x4d-DCN": ("segm_x101_dconv_c3-c5_mstrain_30e_coco", "37.6"),
    "segm LSNet R2-101-DCN": ("segm_res2_101_dconv_c3-c5_mstrain_30e_coco", "38.0"),
    "segm LSNet* X-101-64x4d-DCN": ("segm_x101_dconv_c3-c5_mstrain_30e_coco_mstest", "39.7"),
    "segm LSNet* R2-101-DCN": ("segm_res2_101_dconv_c3-c5_mstrain_30e_coco_mstest", "40.2"),
    "pose LSNet w/ obj-box": ("pose_bbox_x101_dconv_c3-c5_mstrain_2x_coco", "55.7"),
    "pose LSNet w/ kps-box": ("pose_kbox_x101_dconv_c3-c5_mstrain_2x_coco", "59.0"),
}


@pytest.mark.parametrize("row", README_ROWS)
def test_every_readme_row_has_a_recipe(row: str) -> None:
    name, ap = README_ROWS[row]
    recipe = get_plugin_manager().recipe(f"lsnet:{name}")
    assert ap in recipe.summary and "README" in recipe.summary, recipe.summary
    cfg = load_config(f"lsnet:{name}", get_plugin_manager())
    assert cfg.eval.test_time_aug.enabled == ("*" in row)
    assert (cfg.model.head.type == "lscpv") == ("CPV" in row)
    assert (cfg.model.backbone.type == "res2net") == ("R2-101" in row)
    if cfg.model.backbone.type == "res2net":
        assert (cfg.model.backbone.depth, cfg.model.backbone.scales, cfg.model.backbone.base_width) == (101, 4, 26)
    if "DCN" in row or "pose" in row:
        assert cfg.model.backbone.dcn_stages == (False, True, True, True)
