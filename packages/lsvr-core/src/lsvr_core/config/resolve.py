"""Turn slot-base annotations into discriminated unions of the registered component configs.

Any field annotated with a slot base class (exactly ``HeadConfig``, ``LossConfig``, ...; also inside
``Optional[...]``, ``list[...]``, ``dict[str, ...]``) is rebuilt as
``Annotated[Union[<every registered config of that kind>], Field(discriminator="type")]``. Component configs
are resolved recursively, so a head's nested assigners and losses are validated against the registry too.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, Field, create_model

from lsvr_core.specs import SLOT_BASES, ComponentConfig

_BASE_TO_KIND = {base: kind for kind, base in SLOT_BASES.items()}


def _none_registered(kind: str) -> Any:
    def fail(value: Any) -> Any:
        name = value.get("type") if isinstance(value, dict) else value
        raise ValueError(f"unknown {kind} type {name!r}: no installed plugin registers any {kind}")

    return fail


class Resolver:
    """Resolves models against a mapping ``kind -> [config models]`` (memoised, cycle-safe)."""

    def __init__(self, configs_by_kind: dict[str, list[type[ComponentConfig]]]) -> None:
        self.configs_by_kind = configs_by_kind
        self._done: dict[type[BaseModel], type[BaseModel]] = {}

    def union(self, kind: str) -> Any:
        members = tuple(self.model(m) for m in self.configs_by_kind.get(kind, []))
        if not members:
            return Annotated[SLOT_BASES[kind], BeforeValidator(_none_registered(kind))]
        if len(members) == 1:
            return members[0]
        return Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007

    def annotation(self, ann: Any) -> Any:
        if isinstance(ann, type) and ann in _BASE_TO_KIND:
            return self.union(_BASE_TO_KIND[ann])
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return self.model(ann)
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin is None or not args:
            return ann
        new_args = tuple(self.annotation(a) for a in args)
        if new_args == args:
            return ann
        if origin is Union or origin is types.UnionType:
            return Union[new_args]  # noqa: UP007
        if origin is Annotated:
            return Annotated[(new_args[0], *ann.__metadata__)]
        return origin[new_args]

    def model(self, model: type[BaseModel]) -> type[BaseModel]:
        if model in self._done:
            return self._done[model]
        self._done[model] = model  # provisional entry breaks cycles
        overrides: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            new_ann = self.annotation(info.annotation)
            if new_ann is not info.annotation:
                kwargs: dict[str, Any] = {"description": info.description, "validate_default": True}
                if info.default_factory is not None:
                    kwargs["default_factory"] = info.default_factory
                elif isinstance(info.default, BaseModel):
                    # the default is an instance of the unresolved class: re-validate it as plain data
                    default = info.default
                    kwargs["default_factory"] = lambda d=default: d.model_dump(serialize_as_any=True)
                else:
                    kwargs["default"] = info.default
                overrides[name] = (new_ann, Field(**kwargs))
        if overrides:
            resolved = create_model(model.__name__, __base__=model, __module__=model.__module__, **overrides)
            resolved.__doc__ = model.__doc__
            self._done[model] = resolved
        return self._done[model]
