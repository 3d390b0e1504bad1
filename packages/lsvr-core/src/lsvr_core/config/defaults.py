"""Fill in the ``type`` of defaulted nested components before validation.

A head config may default a nested component, e.g. ``loss_cls: LossConfig = FocalLossConfig(gamma=2.0)``.
When a config or an override sets one field of it (``-o model.head.loss_cls.gamma=1.5``) without naming its
``type``, the mapping ``{"gamma": 1.5}`` cannot be matched to a member of the loss union. Here such a
mapping is merged over the field's default (its ``type`` included), as if the default had been written out.
A mapping that names a ``type`` is left alone (it selects a component and takes that component's defaults).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel

from lsvr_core.specs import ComponentConfig


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation allows (through Optional, Union and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _default_dict(info: Any) -> dict[str, Any] | None:
    """The field's default as a plain dict, or None when it has none (or it is not a model/mapping)."""
    try:
        default = info.get_default(call_default_factory=True)
    except TypeError:  # a default factory that needs the validated data
        return None
    if isinstance(default, BaseModel):
        default = default.model_dump(serialize_as_any=True)
    return dict(default) if isinstance(default, dict) else None


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(parent)
    for key, value in child.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def fill_component_defaults(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """A copy of ``data`` where every component mapping without ``type`` is merged over its field's default.

    Args:
        data: the merged, overridden config (plain YAML data).
        model: the resolved root config model (:func:`lsvr_core.config.build_config_model`).
    """
    out = dict(data)
    for name, info in model.model_fields.items():
        value = out.get(name)
        if not isinstance(value, dict):
            continue
        members = _models_in(info.annotation)
        if not members:
            continue
        if "type" not in value and all(issubclass(m, ComponentConfig) for m in members):
            default = _default_dict(info)
            if default is not None and "type" in default:
                value = _merge(default, value)
        chosen = [m for m in members if "type" not in value or m.model_fields.get("type") is None
                  or m.model_fields["type"].default == value["type"]]
        if len(chosen) == 1:
            value = fill_component_defaults(value, chosen[0])
        out[name] = value
    return out
