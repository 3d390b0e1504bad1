"""Every shipped recipe validates; every README row of ``rows.py`` has its recipe, named in its summary with the
published number; the MG COCO recipes evaluate as the reference (v1: 300 detections per image, §6; v2: no
cap) and read COCO as it does (§5); v1 recipes train in fp32 (§5), v2 ones with AMP, EMA and Nesterov SGD (§7)."""

from __future__ import annotations

import pytest

from lsvr_core.config import load_config
from lsvr_core.plugins import get_plugin_manager
from lsvr_mutualguide.rows import OTHER, ROWS


def mg_recipes() -> dict[str, object]:
    pm = get_plugin_manager()
    return {r.name: r for r in pm.recipes() if r.namespace == "mutualguide"}


def test_every_readme_row_has_a_recipe_with_its_number() -> None:
    recipes = mg_recipes()
    assert set(recipes) == set(ROWS) | set(OTHER)
    for name, (row, numbers) in ROWS.items():
        assert row in recipes[name].summary and numbers.split()[1] in recipes[name].summary


@pytest.mark.parametrize("name", sorted(set(ROWS) | set(OTHER)))
def test_recipe_validates(name: str) -> None:
    cfg = load_config(f"mutualguide:{name}", get_plugin_manager())
    assert cfg.model.head.type == "mutual_guide"
    baseline = name.endswith("_baseline")
    assert cfg.model.head.assigner.type == ("iou" if baseline else "mutual_guide")
    v2 = "v2" in name
    if not v2:
        assert cfg.runtime.precision == "fp32" and cfg.runtime.ema is None
    else:  # HEAD: AMP (auto on the CPU smoke runs), EMA, Nesterov, the v2 head and assigner
        assert cfg.runtime.precision == ("auto" if name.endswith("_v2") else "fp16")
        assert cfg.runtime.ema is not None and cfg.optim.nesterov
        assert cfg.model.head.tower and cfg.model.head.assigner.variant == "v2" and cfg.model.head.nms == "agnostic"
        assert cfg.data.train.pipeline.mg_v2_aug
    if name.startswith("coco"):
        assert cfg.eval.evaluator.max_dets == (100000 if v2 else 300)
        assert cfg.data.train.annotation_rules == "mutualguide"
        assert cfg.data.val.annotation_rules == "mmdet"  # COCOeval scores against the file, as the reference
