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
    assert cfg.model.head.type == "lsnet"
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
