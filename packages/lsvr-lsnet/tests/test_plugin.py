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
