"""Semantic checks of a validated run config, across sections (torch-free; run by :func:`load_config`).

Field validation (types, ranges, slots) happens in the pydantic models. What needs two sections at once, or the
registry's component specs, is checked here, so that a config ``lsvr validate`` accepts is one that builds:

- the task is supported by the head, the datasets and the evaluator (``ComponentSpec.tasks``);
- level names exist: the neck's input levels are among the backbone's outputs, the head's input levels among
  the neck's outputs (or the backbone's without a neck), using the level declarations of the config models
  (:meth:`~lsvr_core.specs.BackboneConfig.output_strides`, :meth:`~lsvr_core.specs.NeckConfig.input_level_names`,
  :meth:`~lsvr_core.specs.NeckConfig.output_strides`, :meth:`~lsvr_core.specs.HeadConfig.input_level_names`); a
  component that declares nothing is not checked;
- a head config's ``pad_divisor`` (the padding its location grid assumes) is taken from ``data.size_divisor``
  when the config leaves it unset, and must equal it when set;
- ``model.num_classes`` equals the class count of the datasets that know theirs
  (:meth:`~lsvr_core.specs.DatasetConfig.known_num_classes`).
"""

from __future__ import annotations

from typing import Any

from lsvr_core.errors import ConfigError

Problem = tuple[str, str, Any]  # (dotted path, message, offending value)


def _tasks(manager: Any, kind: str, name: str) -> tuple[str, ...]:
    try:
        return manager.get(kind, name).tasks
    except Exception:  # an unknown type was already rejected by validation; nothing to add here
        return ()


def task_problems(cfg: Any, manager: Any) -> list[Problem]:
    """The components whose spec lists tasks that exclude ``cfg.task``."""
    slots = [("model.head", "head", cfg.model.head), ("data.train", "dataset", cfg.data.train),
             ("data.val", "dataset", cfg.data.val), ("eval.evaluator", "evaluator", cfg.eval.evaluator)]
    out = []
    for path, kind, component in slots:
        if component is None:
            continue
        tasks = _tasks(manager, kind, component.type)
        if tasks and cfg.task not in tasks:
            out.append(("task", f"{kind} {component.type!r} ({path}) supports tasks {', '.join(tasks)}", cfg.task))
    return out


def _missing(path: str, wanted: tuple[str, ...] | None, available: dict[str, int] | None,
             producer: str) -> list[Problem]:
    if not wanted or available is None:
        return []
    missing = [lv for lv in wanted if lv not in available]
    if not missing:
        return []
    outputs = ", ".join(available) or "nothing"
    return [(path, f"{', '.join(missing)} not produced by {producer}, which outputs {outputs}", list(wanted))]


def _levels_path(section: str, component: Any) -> str:
    return f"{section}.in_levels" if "in_levels" in type(component).model_fields else section


def level_problems(cfg: Any) -> list[Problem]:
    """Neck and head input levels that the component before them does not produce."""
    model = cfg.model
    levels = type(model.backbone).output_strides(model.backbone)
    producer = f"the backbone {model.backbone.type!r}"
    out: list[Problem] = []
    if model.neck is not None:
        wanted = type(model.neck).input_level_names(model.neck)
        out += _missing(_levels_path("model.neck", model.neck), wanted, levels, producer)
        if out:
            return out
        levels = type(model.neck).output_strides(model.neck, levels) if levels is not None else None
        producer = f"the neck {model.neck.type!r}"
    out += _missing(_levels_path("model.head", model.head), type(model.head).input_level_names(model.head), levels,
                    producer)
    return out


def pad_divisor_problems(cfg: Any) -> list[Problem]:
    """Derive an unset ``model.head.pad_divisor`` from ``data.size_divisor``; a set one must equal it."""
    head = cfg.model.head
    if "pad_divisor" not in type(head).model_fields:
        return []
    if "pad_divisor" not in head.model_fields_set:
        head.pad_divisor = cfg.data.size_divisor
        head.model_fields_set.discard("pad_divisor")  # still derived: a later size_divisor override wins
        return []
    if head.pad_divisor != cfg.data.size_divisor:
        return [("model.head.pad_divisor", f"must equal data.size_divisor={cfg.data.size_divisor} (images are padded "
                 "to data.size_divisor; the head's grid assumes pad_divisor); leave it unset to derive it",
                 head.pad_divisor)]
    return []


def num_classes_problems(cfg: Any) -> list[Problem]:
    """``model.num_classes`` against each dataset that knows its class count for ``cfg.task``."""
    out = []
    for path, dataset in (("data.train", cfg.data.train), ("data.val", cfg.data.val)):
        known = type(dataset).known_num_classes(dataset, cfg.task) if dataset is not None else None
        if known is not None and known != cfg.model.num_classes:
            out.append(("model.num_classes", f"{path} ({dataset.type!r}, task {cfg.task}) has {known} classes",
                        cfg.model.num_classes))
    return out


def check_run_config(cfg: Any, manager: Any, source: str) -> Any:
    """Run every check; derive what is derived (``pad_divisor``) in place and return ``cfg``.

    Raises:
        ConfigError: one line per problem, ``  dotted.path: message (got value)``, like field validation.
    """
    problems = task_problems(cfg, manager) + level_problems(cfg) + pad_divisor_problems(cfg) + num_classes_problems(cfg)
    if problems:
        lines = [f"  {path}: {message} (got {value!r})" for path, message, value in problems]
        raise ConfigError(f"{source}: invalid config:\n" + "\n".join(lines))
    return cfg
