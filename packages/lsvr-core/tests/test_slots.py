"""Compatible slots: a nested slot offers only the components implementing the interface it calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lsvr_core.config import build_config_model, load_config
from lsvr_core.errors import ConfigError
from lsvr_core.plugins import PluginManager

# Two assigners with different call signatures, three losses, a head whose slots name their interfaces.
SLOT_PLUGIN = """
from typing import Annotated, Literal
from lsvr_core.api import AssignerConfig, ComponentSpec, DatasetConfig, HeadConfig, LossConfig, Slot, hookimpl

class PointAsg(AssignerConfig):
    type: Literal["pt_asg"] = "pt_asg"

class AnchorAsg(AssignerConfig):
    type: Literal["anc_asg"] = "anc_asg"

class ClsLoss(LossConfig):
    type: Literal["cls_loss"] = "cls_loss"
    gamma: float = 2.0

class BoxLoss(LossConfig):
    type: Literal["box_l"] = "box_l"

class AnyLoss(LossConfig):
    type: Literal["any_loss"] = "any_loss"

class SlotHead(HeadConfig):
    type: Literal["slot_head"] = "slot_head"
    assigner: Annotated[AssignerConfig, Slot("point_assigner")] = PointAsg()
    loss_cls: Annotated[LossConfig, Slot("classification_loss")] = ClsLoss()
    loss_iou: Annotated[LossConfig, Slot("box_loss")] | None = None
    loss_free: LossConfig = AnyLoss()

class Data(DatasetConfig):
    type: Literal["slot_data"] = "slot_data"

@hookimpl
def lsvr_assigners():
    return [ComponentSpec("assigner", "pt_asg", PointAsg, "x:y", "t", implements=("point_assigner",)),
            ComponentSpec("assigner", "anc_asg", AnchorAsg, "x:y", "t", implements=("anchor_assigner",))]

@hookimpl
def lsvr_losses():
    return [ComponentSpec("loss", "cls_loss", ClsLoss, "x:y", "t", implements=("classification_loss",)),
            ComponentSpec("loss", "box_l", BoxLoss, "x:y", "t", implements=("box_loss",)),
            ComponentSpec("loss", "any_loss", AnyLoss, "x:y", "t")]

@hookimpl
def lsvr_heads():
    return [ComponentSpec("head", "slot_head", SlotHead, "x:y", "t", ("bbox",))]

@hookimpl
def lsvr_datasets():
    return [ComponentSpec("dataset", "slot_data", Data, "x:y", "t")]
"""


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> PluginManager:
    plugin = tmp_path_factory.mktemp("plugin") / "slot_plugin.py"
    plugin.write_text(SLOT_PLUGIN)
    return PluginManager([plugin], entry_points=False)


def _load(manager: PluginManager, tmp_path: Path, **head: object):
    data = {"model": {"num_classes": 2, "backbone": {"type": "resnet", "depth": 18},
                      "head": {"type": "slot_head", **head}},
            "data": {"train": {"type": "slot_data"}}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, manager)


def test_fitting_components_are_accepted(manager: PluginManager, tmp_path: Path) -> None:
    cfg = _load(manager, tmp_path, loss_cls={"type": "cls_loss", "gamma": 1.0}, loss_iou={"type": "box_l"})
    assert type(cfg.model.head.loss_cls).__name__ == "ClsLoss" and cfg.model.head.loss_cls.gamma == 1.0
    assert type(cfg.model.head.loss_iou).__name__ == "BoxLoss"
    assert type(cfg.model.head.assigner).__name__ == "PointAsg"  # the default re-validated through the slot
    # a bare slot base still accepts every loss, whatever it implements
    free = _load(manager, tmp_path, loss_free={"type": "box_l"})
    assert type(free.model.head.loss_free).__name__ == "BoxLoss"


@pytest.mark.parametrize(("head", "line"), [
    ({"assigner": {"type": "anc_asg"}},
     "  model.head.assigner.type: assigner 'anc_asg' implements anchor_assigner, but this slot calls "
     "point_assigner; types that fit: pt_asg (got 'anc_asg')"),
    ({"loss_cls": {"type": "any_loss"}},
     "  model.head.loss_cls.type: loss 'any_loss' implements no interface, but this slot calls "
     "classification_loss; types that fit: cls_loss, focal (got 'any_loss')"),
    ({"loss_iou": {"type": "focal"}},  # a built-in loss registered without this interface
     "  model.head.loss_iou.type: loss 'focal' implements classification_loss, soft_classification_loss, but "
     "this slot calls box_loss; types that fit: box_l, giou (got 'focal')"),
    ({"loss_cls": {"type": "nope"}},
     "  model.head.loss_cls.type: 'nope' is not a registered loss; this slot calls classification_loss; "
     "types that fit: cls_loss, focal (got 'nope')"),
])
def test_wrong_type_names_path_value_and_fitting_types(manager: PluginManager, tmp_path: Path, head: dict,
                                                       line: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(manager, tmp_path, **head)
    assert str(err.value).splitlines()[1:] == [line]


def test_schema_lists_only_fitting_types(manager: PluginManager) -> None:
    schema = build_config_model(manager).model_json_schema()
    head = next(v for k, v in schema["$defs"].items() if k.startswith("SlotHead"))["properties"]
    assert head["assigner"]["$ref"].endswith("/PointAsg")
    assert head["assigner"]["description"] == "calls point_assigner (pt_asg)"
    box = head["loss_iou"]["anyOf"][0]  # built-in giou implements box_loss too
    assert sorted(box["discriminator"]["mapping"]) == ["box_l", "giou"]
    free = json.dumps(head["loss_free"])
    for name in ("ClsLoss", "BoxLoss", "AnyLoss", "FocalLossConfig", "GIoULossConfig"):
        assert name in free


def test_slot_with_nothing_installed_says_so(tmp_path: Path) -> None:
    plugin = tmp_path / "lonely.py"
    plugin.write_text(SLOT_PLUGIN.replace('implements=("point_assigner",)', "implements=()"))
    manager = PluginManager([plugin], entry_points=False)
    with pytest.raises(ConfigError, match=r"model\.head\.assigner\.type: .*types that fit: none \(no installed "
                                          r"assigner implements it\)"):
        _load(manager, tmp_path)
