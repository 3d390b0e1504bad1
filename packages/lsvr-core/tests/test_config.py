"""Config building, extends/overrides and the error messages users see."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from fake_dists import run_lsvr  # noqa: E402

from lsvr_core.config import apply_overrides, build_config_model, deep_merge, load_config  # noqa: E402
from lsvr_core.errors import ConfigError  # noqa: E402
from lsvr_core.plugins import PluginManager  # noqa: E402

BASE = {
    "task": "bbox",
    "model": {
        "num_classes": 3,
        "backbone": {"type": "resnet", "depth": 18},
        "neck": {"type": "fpn", "out_channels": 32},
        "head": {"type": "fcos", "num_convs": 1},
    },
    "data": {"root": "/data", "train": {"type": "toy_dataset", "n": 4}},
}
TOY_PLUGIN = """
from typing import Literal
from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import ComponentSpec, DatasetConfig, EvaluatorConfig, HeadConfig, LossConfig

class ToyEvaluator(EvaluatorConfig):
    type: Literal["toy_eval"] = "toy_eval"

@hookimpl
def lsvr_evaluators():
    return [ComponentSpec("evaluator", "toy_eval", ToyEvaluator, "x:y", "toy")]

class ToyDataset(DatasetConfig):
    type: Literal["toy_dataset"] = "toy_dataset"
    n: int = 1

class ToyLoss(LossConfig):
    type: Literal["toy_loss"] = "toy_loss"
    beta: float = 1.0

class ToyHead(HeadConfig):
    type: Literal["toy_head"] = "toy_head"
    loss_cls: LossConfig = ToyLoss()
    extra_losses: list[LossConfig] = []

@hookimpl
def lsvr_datasets():
    return [ComponentSpec("dataset", "toy_dataset", ToyDataset, "x:y", "toy")]

@hookimpl
def lsvr_losses():
    return [ComponentSpec("loss", "toy_loss", ToyLoss, "x:y", "toy")]

@hookimpl
def lsvr_heads():
    return [ComponentSpec("head", "toy_head", ToyHead, "x:y", "toy")]
"""


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> PluginManager:
    plugin = tmp_path_factory.mktemp("plugin") / "toy_plugin.py"
    plugin.write_text(TOY_PLUGIN)
    return PluginManager([plugin], entry_points=False)


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_valid_config_builds_component_models(manager: PluginManager, tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "a.yaml", BASE), manager)
    assert type(cfg.model.head).__name__ == "FCOSHeadConfig" and cfg.model.head.num_convs == 1
    assert cfg.data.train.n == 4 and cfg.data.root == Path("/data")
    assert cfg.schedule.epochs == 12  # section default
    # sections rebuilt by the resolver (eval holds an evaluator slot) still take their defaults
    assert cfg.eval.evaluator is None and cfg.eval.interval == 1
    with_eval = load_config(write(tmp_path / "e.yaml", {**BASE, "eval": {"evaluator": {"type": "toy_eval"}}}), manager)
    assert type(with_eval.eval.evaluator).__name__ == "ToyEvaluator"


def test_nested_slots_are_discriminated_unions(manager: PluginManager, tmp_path: Path) -> None:
    data = {**BASE, "model": {**BASE["model"], "head": {"type": "toy_head", "loss_cls": {"type": "focal", "gamma": 1.0},
                                                        "extra_losses": [{"type": "toy_loss", "beta": 2}]}}}
    cfg = load_config(write(tmp_path / "b.yaml", data), manager)
    assert type(cfg.model.head.loss_cls).__name__ == "FocalLossConfig" and cfg.model.head.loss_cls.gamma == 1.0
    assert cfg.model.head.extra_losses[0].beta == 2.0
    model = {**BASE["model"], "head": {"type": "toy_head"}}
    default = load_config(write(tmp_path / "c.yaml", {**BASE, "model": model}), manager)
    assert type(default.model.head.loss_cls).__name__ == "ToyLoss"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.backbone.dept=50", "model.backbone.dept: Extra inputs are not permitted (got 50)"),
        ("model.head.num_convs=many", "model.head.num_convs: Input should be a valid integer"),
        ("model.head.type=retina", "model.head: Input tag 'retina' found using 'type' does not match any of the "
                                   "expected tags: 'fcos', 'htc', 'mask_rcnn', 'toy_head'"),
        ("model.head.loss_cls={type: foc}", "does not match any of the expected tags"),
        ("optim.lr=-1", "optim.lr: Input should be greater than 0 (got -1)"),
        ("schedule.epochs=2", "schedule.milestones [8, 11] exceed schedule.epochs=2"),
    ],
)
def test_error_messages_name_path_and_value(manager: PluginManager, tmp_path: Path, override: str,
                                            expected: str) -> None:
    path = write(tmp_path / "cfg.yaml", BASE)
    overrides = [override] if "loss_cls" not in override else ["model.head.type=toy_head", override]
    with pytest.raises(ConfigError) as err:
        load_config(path, manager, overrides)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_extends_chain_and_overrides(manager: PluginManager, tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", BASE)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "mid.yaml",
          {"extends": "../base.yaml", "optim": {"lr": 0.5}, "model": {"neck": {"out_channels": 64}}})
    child = write(tmp_path / "sub" / "child.yaml", {"extends": "mid.yaml", "model": {"head": {"type": "toy_head"}}})
    cfg = load_config(child, manager, ["schedule.epochs=20", "optim.grad_clip=35", "model.neck.norm=gn"])
    assert cfg.optim.lr == 0.5 and cfg.optim.grad_clip == 35.0
    assert cfg.model.neck.out_channels == 64 and cfg.model.neck.norm == "gn"
    assert cfg.model.backbone.depth == 18  # inherited from the grandparent
    assert cfg.schedule.epochs == 20
    assert cfg.model.head.type == "toy_head" and not hasattr(cfg.model.head, "num_convs")  # replaced, not merged


def test_extends_by_recipe_name(manager: PluginManager, tmp_path: Path) -> None:
    child = write(tmp_path / "r.yaml", {"extends": "lsvr:fcos_r18_synthetic", "model": {"num_classes": 7}})
    raw = yaml.safe_load(child.read_text())
    assert raw["extends"] == "lsvr:fcos_r18_synthetic"
    from lsvr_core.config import load_raw

    merged = load_raw(child, manager)
    assert merged["model"]["num_classes"] == 7 and merged["model"]["backbone"]["depth"] == 18


def test_missing_parent_and_bad_override(manager: PluginManager, tmp_path: Path) -> None:
    child = write(tmp_path / "c.yaml", {"extends": "nowhere.yaml"})
    with pytest.raises(ConfigError, match=r"extends: parent config 'nowhere.yaml' not found"):
        load_config(child, manager)
    with pytest.raises(ConfigError, match="unknown recipe 'lsnet:nope'"):
        load_config(write(tmp_path / "d.yaml", {"extends": "lsnet:nope"}), manager)
    with pytest.raises(ConfigError, match="must look like a.b.c=value"):
        apply_overrides(BASE, ["model.head"])
    with pytest.raises(ConfigError, match="model.head.type is 'fcos', not a mapping"):
        apply_overrides(BASE, ["model.head.type.x=1"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml", manager)
    (tmp_path / "bad.yaml").write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml", manager)


def test_yaml_is_read_safely(manager: PluginManager, tmp_path: Path) -> None:
    (tmp_path / "evil.yaml").write_text("task: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "evil.yaml", manager)


def test_deep_merge_semantics() -> None:
    parent = {"a": {"type": "x", "p": 1, "q": 2}, "b": {"c": 1}}
    assert deep_merge(parent, {"a": {"q": 3}}) == {"a": {"type": "x", "p": 1, "q": 3}, "b": {"c": 1}}
    assert deep_merge(parent, {"a": {"type": "y"}})["a"] == {"type": "y"}
    assert parent["a"]["q"] == 2  # inputs untouched


def test_schema_lists_plugin_components(manager: PluginManager) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = build_config_model(manager).model_json_schema()
    assert "ToyHead" in schema["$defs"] and "FCOSHeadConfig" in schema["$defs"]
    ok = {**BASE, "model": {**BASE["model"], "head": {"type": "toy_head"}}}
    jsonschema.validate(ok, schema)
    bad = {**BASE, "model": {**BASE["model"], "head": {"type": "fcos", "num_conv": 2}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_cli_exit_code_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path / "cfg.yaml", {**BASE, "data": {"train": {"type": "synthetic"}}})
    res = run_lsvr(["validate", str(path), "-o", "model.backbone.depth=19"])
    assert res.returncode == 2
    assert "model.backbone.depth: Input should be 18, 34, 50, 101 or 152 (got 19)" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_lsvr(["validate", str(path), "-o", "nodot"])
    assert res.returncode == 2 and "override 'nodot' must look like a.b.c=value" in res.stderr
