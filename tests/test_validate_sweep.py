"""`lsvr validate` means it builds: mutate every shipped recipe; whatever validate accepts must build and run.

Mutations per recipe: every other task; bad level names (backbone ``out_levels``, neck and head ``in_levels``);
a ``pad_divisor`` that differs from ``data.size_divisor`` and a changed ``data.size_divisor`` (from which an
unset ``pad_divisor`` is derived); every registered component in every nested slot of the head; a wrong
``num_classes``. Validation (torch-free) is checked for every mutation in the fast test; the slow test builds
each distinct accepted model with :func:`lsvr_core.engine.build_check.build_check` (one training and one
inference forward on a 64-pixel synthetic batch), with a smaller backbone of the same type to stay fast; a
slot swap is built once per head type, task and component, other mutations once per distinct model.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from lsvr_core.config import apply_overrides, build_config_model, load_raw
from lsvr_core.config.checks import check_run_config
from lsvr_core.config.loader import validate
from lsvr_core.config.resolve import slot_interfaces
from lsvr_core.errors import ConfigError
from lsvr_core.plugins import PluginManager

TASKS = ("bbox", "segm", "pose_bbox", "pose_kbox", "keypoints")


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


def _set(data: dict, dotted: str, value: Any) -> dict:
    return apply_overrides(data, [f"{dotted}={json.dumps(value)}"])


def mutations(raw: dict, cfg: Any, manager: PluginManager) -> Iterator[tuple[str, dict, bool | None]]:
    """``(name, mutated raw config, expected)``: expected False = must be rejected, None = either way."""
    for task in TASKS:
        if task != cfg.task:
            yield f"task={task}", _set(raw, "task", task), None
    model = cfg.model
    if "out_levels" in type(model.backbone).model_fields:
        yield "backbone.out_levels=[c9]", _set(raw, "model.backbone.out_levels", ["c9"]), False
        if len(model.backbone.out_levels) > 1:
            fewer = list(model.backbone.out_levels[1:])
            yield "backbone.out_levels[1:]", _set(raw, "model.backbone.out_levels", fewer), None
    if model.neck is not None and model.neck.input_level_names():
        levels = [*model.neck.input_level_names()[:-1], "c9"]
        yield "neck.in_levels[-1]=c9", _set(raw, "model.neck.in_levels", levels), False
    if model.head.input_level_names():
        levels = [*model.head.input_level_names()[:-1], "p9"]
        yield "head.in_levels[-1]=p9", _set(raw, "model.head.in_levels", levels), False
    if "pad_divisor" in type(model.head).model_fields:
        yield "head.pad_divisor=2x", _set(raw, "model.head.pad_divisor", 2 * cfg.data.size_divisor), False
    yield "data.size_divisor=64", _set(raw, "data.size_divisor", 64 if cfg.data.size_divisor != 64 else 32), None
    for field, interface in slot_interfaces(type(model.head)).items():
        kind = "assigner" if "assigner" in interface else "loss"
        current = getattr(getattr(model.head, field), "type", None)
        for spec in manager.components(kind):
            if spec.name == current:
                continue  # not a type change: the recipe itself covers it
            fits = interface in spec.implements
            mutated = _set(raw, f"model.head.{field}", {"type": spec.name})
            yield f"head.{field}={spec.name}", mutated, None if fits else False
    yield "num_classes+1", _set(raw, "model.num_classes", cfg.model.num_classes + 1), None


def _validate(data: dict, model: Any, manager: PluginManager, name: str) -> Any:
    return check_run_config(validate(copy.deepcopy(data), model, name), manager, name)


def sweep(manager: PluginManager) -> tuple[list[tuple[str, Any]], dict[str, int]]:
    """Every accepted mutation's config, and counts of accepted / rejected mutations."""
    model = build_config_model(manager)
    accepted, counts = [], {"accepted": 0, "rejected": 0}
    for recipe in manager.recipes():
        raw = load_raw(recipe.ref, manager)
        base = _validate(raw, model, manager, recipe.ref)
        for name, data, expected in mutations(raw, base, manager):
            where = f"{recipe.ref} [{name}]"
            try:
                cfg = _validate(data, model, manager, where)
            except ConfigError as err:
                assert "Traceback" not in str(err) and "invalid config" in str(err), str(err)
                counts["rejected"] += 1
                continue
            assert expected is not False, f"{where}: validate accepted a mutation that cannot build"
            counts["accepted"] += 1
            accepted.append((where, cfg))
    return accepted, counts


@pytest.mark.slow
def test_mutations_validate_or_fail_with_a_config_error(manager: PluginManager) -> None:
    accepted, counts = sweep(manager)
    assert counts["rejected"] > 5 * len(manager.recipes()), counts  # levels, pad_divisor, misfit slots, tasks
    assert counts["accepted"] > 0, counts


def _small_backbone(cfg: Any) -> Any:
    """The same backbone type, made small: ResNet-18 trunk, LESA width 16, ShuffleNetV2 0.5x."""
    backbone = cfg.model.backbone
    shrink = {"resnet": {"depth": 18, "groups": 1, "width_per_group": 64}, "lesa_r50": {"width": 16},
              "lesa_wrn50": {"width": 16}, "shufflenet_v2": {"width": "0.5"}, "resnet_mg": {"depth": 18}}
    update = shrink.get(backbone.type, {})
    small = type(backbone).model_validate({**backbone.model_dump(), **update})
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"backbone": small})})


def _key(cfg: Any, where: str) -> str:
    """What makes two accepted mutations the same build check: a slot swap is checked once per head type, task
    and swapped component; other mutations once per model whose backbone differs only in size or freezing."""
    swap = where.split("[", 1)[1].rstrip("]")
    if swap.startswith("head.") and "=" in swap and not swap.startswith("head.pad_divisor"):
        return json.dumps([cfg.task, cfg.model.head.type, swap])
    model = cfg.model.model_dump(mode="json")
    model["backbone"] = {k: model["backbone"].get(k) for k in ("type", "out_levels", "dcn_stages")}
    return json.dumps([cfg.task, model, cfg.data.size_divisor], sort_keys=True)


@pytest.mark.slow
def test_every_accepted_mutation_builds_and_runs(manager: PluginManager) -> None:
    import torch

    from lsvr_core.engine.build_check import build_check

    torch.set_num_threads(1)
    accepted, _ = sweep(manager)
    built: dict[str, str] = {}
    for where, cfg in accepted:
        key = _key(cfg, where)
        if key in built:
            continue
        small = _small_backbone(cfg)
        try:
            report = build_check(small, manager, image_size=64)
        except Exception as err:  # noqa: BLE001 - report which mutation broke, with the error
            raise AssertionError(f"{where}: validate accepted it but --build failed: {type(err).__name__}: "
                                 f"{err}") from err
        assert report.parameters > 0 and len(report.detections) == 2, where
        built[key] = where
    print(f"built and ran {len(built)} distinct models from {len(accepted)} accepted mutations")
