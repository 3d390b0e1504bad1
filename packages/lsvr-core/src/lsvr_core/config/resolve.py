"""Turn slot-base annotations into discriminated unions of the registered component configs.

Any field annotated with a slot base class (exactly ``HeadConfig``, ``LossConfig``, ...; also inside
``Optional[...]``, ``list[...]``, ``dict[str, ...]``) is rebuilt as
``Annotated[Union[<every registered config of that kind>], Field(discriminator="type")]``. A slot base
annotated with :class:`~lsvr_core.specs.Slot` (``Annotated[LossConfig, Slot("classification_loss")]``) is
rebuilt as the union of the registered configs whose component implements that interface only, and a
``type`` outside it is rejected with the list of types that fit. Component configs are resolved recursively,
so a head's nested assigners and losses are validated against the registry too.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, Field, create_model
from pydantic_core import PydanticCustomError

from lsvr_core.specs import SLOT_BASES, ComponentConfig, Slot

_BASE_TO_KIND = {base: kind for kind, base in SLOT_BASES.items()}

#: error type of a ``type`` that does not fit its slot (``format_validation_error`` adds ``.type`` to the path)
SLOT_TYPE_ERROR = "slot_type"


def _none_registered(kind: str) -> Any:
    def fail(value: Any) -> Any:
        name = value.get("type") if isinstance(value, dict) else value
        raise ValueError(f"unknown {kind} type {name!r}: no installed plugin registers any {kind}")

    return fail


def _type_of(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("type")
    return getattr(value, "type", None)


def _slot_check(kind: str, interface: str, fitting: list[str], implements: dict[str, tuple[str, ...]]) -> Any:
    """A before-validator rejecting a ``type`` that does not implement ``interface``, naming what fits."""

    def check(value: Any) -> Any:
        name = _type_of(value)
        if name is None or name in fitting:
            return value
        fits = ", ".join(fitting) if fitting else f"none (no installed {kind} implements it)"
        if name in implements:
            offered = ", ".join(implements[name]) or "no interface"
            why = f"{kind} {name!r} implements {offered}, but this slot calls {interface}"
        else:
            why = f"{name!r} is not a registered {kind}; this slot calls {interface}"
        raise PydanticCustomError(SLOT_TYPE_ERROR, "{why}; types that fit: {fits}", {"why": why, "fits": fits})

    return check


def _slot_of(metadata: Any) -> Slot | None:
    return next((m for m in metadata if isinstance(m, Slot)), None)


class Resolver:
    """Resolves models against a mapping ``kind -> [config models]`` (memoised, cycle-safe).

    Args:
        configs_by_kind: the registered config models of each kind.
        implements: interfaces each config model's component implements (``ComponentSpec.implements``);
            configs missing from it implement none.
    """

    def __init__(self, configs_by_kind: dict[str, list[type[ComponentConfig]]],
                 implements: dict[type[ComponentConfig], tuple[str, ...]] | None = None) -> None:
        self.configs_by_kind = configs_by_kind
        self.implements = implements or {}
        self._done: dict[type[BaseModel], type[BaseModel]] = {}

    def fitting(self, kind: str, interface: str | None) -> list[type[ComponentConfig]]:
        """The registered configs of ``kind`` whose component implements ``interface`` (all when None)."""
        configs = self.configs_by_kind.get(kind, [])
        return [c for c in configs if interface is None or interface in self.implements.get(c, ())]

    def union(self, kind: str, interface: str | None = None) -> Any:
        fitting = self.fitting(kind, interface)
        members = tuple(self.model(m) for m in fitting)
        if not members and interface is None:
            return Annotated[SLOT_BASES[kind], BeforeValidator(_none_registered(kind))]
        if interface is not None:
            names = [_type_default(c) for c in fitting]
            implements = {_type_default(c): self.implements.get(c, ()) for c in self.configs_by_kind.get(kind, [])}
            check = BeforeValidator(_slot_check(kind, interface, names, implements))
            if not members:
                return Annotated[SLOT_BASES[kind], check]
            if len(members) == 1:
                return Annotated[members[0], check]
            return Annotated[Union[members], Field(discriminator="type"), check]  # noqa: UP007
        if len(members) == 1:
            return members[0]
        return Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007

    def annotation(self, ann: Any, slot: Slot | None = None) -> Any:
        if isinstance(ann, type) and ann in _BASE_TO_KIND:
            return self.union(_BASE_TO_KIND[ann], slot.interface if slot else None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return self.model(ann)
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin is Annotated:
            inner = self.annotation(args[0], _slot_of(ann.__metadata__) or slot)
            if inner is args[0]:
                return ann
            return Annotated[(inner, *ann.__metadata__)]  # a Slot stays as (ignored) metadata for slot_interfaces
        if origin is None or not args:
            return ann
        new_args = tuple(self.annotation(a, slot) for a in args)
        if new_args == args:
            return ann
        if origin is Union or origin is types.UnionType:
            return Union[new_args]  # noqa: UP007
        return origin[new_args]

    def model(self, model: type[BaseModel]) -> type[BaseModel]:
        if model in self._done:
            return self._done[model]
        self._done[model] = model  # provisional entry breaks cycles
        overrides: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            slot = _slot_of(info.metadata)
            new_ann = self.annotation(info.annotation, slot)
            if new_ann is not info.annotation or slot is not None:
                description = info.description
                if slot is not None:
                    fits = ", ".join(_type_default(c) for c in self.fitting(_kind_in(info.annotation), slot.interface))
                    note = f"calls {slot.interface} ({fits or 'none installed'})"
                    description = f"{description}; {note}" if description else note
                kwargs: dict[str, Any] = {"description": description, "validate_default": True}
                if info.default_factory is not None:
                    kwargs["default_factory"] = info.default_factory
                elif isinstance(info.default, BaseModel):
                    # the default is an instance of the unresolved class: re-validate it as plain data
                    default = info.default
                    kwargs["default_factory"] = lambda d=default: d.model_dump(serialize_as_any=True)
                else:
                    kwargs["default"] = info.default
                kept = Annotated[new_ann, slot] if slot is not None else new_ann  # slot_interfaces() still sees it
                overrides[name] = (kept, Field(**kwargs))
        if overrides:
            resolved = create_model(model.__name__, __base__=model, __module__=model.__module__, **overrides)
            resolved.__doc__ = model.__doc__
            self._done[model] = resolved
        return self._done[model]


def slot_interfaces(config: type[BaseModel]) -> dict[str, str]:
    """``{field: interface}`` of the :class:`~lsvr_core.specs.Slot` fields of a component config."""
    out = {}
    for name, info in config.model_fields.items():
        slot = _slot_of(info.metadata) or _nested_slot(info.annotation)
        if slot is not None:
            out[name] = slot.interface
    return out


def _nested_slot(ann: Any) -> Slot | None:
    if typing.get_origin(ann) is Annotated:
        return _slot_of(ann.__metadata__)
    return next((s for a in typing.get_args(ann) if (s := _nested_slot(a)) is not None), None)


def _type_default(config: type[ComponentConfig]) -> str:
    return str(config.model_fields["type"].default)


def _kind_in(ann: Any) -> str:
    """The component kind of the slot base inside ``ann`` (``LossConfig | None`` -> ``loss``)."""
    if isinstance(ann, type) and ann in _BASE_TO_KIND:
        return _BASE_TO_KIND[ann]
    for arg in typing.get_args(ann):
        if arg is not type(None):
            try:
                return _kind_in(arg)
            except TypeError:
                continue
    raise TypeError(f"Slot(...) must annotate a slot base such as LossConfig, got {ann!r}")
