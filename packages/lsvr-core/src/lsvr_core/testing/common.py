"""Helpers shared by the conformance suites: factory lookup, config round trip, gradient checks."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from lsvr_core.specs import SLOT_BASES, ComponentConfig, ComponentSpec, load_object


def resolve_factory(factory_or_spec: Any, kind: str) -> Callable[..., Any]:
    """Accept a :class:`ComponentSpec`, a ``"module:callable"`` string or a callable; return the factory."""
    if isinstance(factory_or_spec, ComponentSpec):
        assert factory_or_spec.kind == kind, (
            f"expected a {kind} spec, got {factory_or_spec.kind} {factory_or_spec.name!r}")
        return factory_or_spec.load()
    if isinstance(factory_or_spec, str):
        return load_object(factory_or_spec)
    assert callable(factory_or_spec), f"expected a {kind} factory, spec or 'module:callable', got {factory_or_spec!r}"
    return factory_or_spec


_DEFAULT_REGISTRY: Any = None


def default_registry() -> Any:
    """A plugin manager over every installed plugin, created once per process for the conformance suites
    (pass ``manager=`` to the ``check_*`` functions to test against another registry)."""
    global _DEFAULT_REGISTRY
    if _DEFAULT_REGISTRY is None:
        from lsvr_core.plugins import PluginManager

        _DEFAULT_REGISTRY = PluginManager()
    return _DEFAULT_REGISTRY


def check_config_roundtrip(cfg: ComponentConfig, kind: str, manager: Any = None) -> ComponentConfig:
    """The config survives ``model_dump`` -> JSON -> ``model_validate`` unchanged and rejects unknown keys.

    Nested slots (a head's ``loss_cls: LossConfig``) are resolved against the registry of ``manager``
    (default: :func:`default_registry`) exactly as a run config resolves them.

    Returns:
        the re-validated config.
    """
    from lsvr_core.config.resolve import Resolver
    base = SLOT_BASES[kind]
    assert isinstance(cfg, base), f"config {type(cfg).__name__} must subclass {base.__name__} (the {kind} slot base)"
    type_field = type(cfg).model_fields["type"]
    assert type_field.default == cfg.type, (
        f"{type(cfg).__name__}: `type` default {type_field.default!r} differs from the value {cfg.type!r}; declare "
        f"`type: Literal[{cfg.type!r}] = {cfg.type!r}`")
    manager = manager or default_registry()
    by_kind: dict[str, list[type[ComponentConfig]]] = {}
    implements: dict[type[ComponentConfig], tuple[str, ...]] = {}
    for spec in manager.components():
        if spec.config is not None and not (spec.kind == kind and spec.name == cfg.type):
            by_kind.setdefault(spec.kind, []).append(spec.config)
            implements[spec.config] = spec.implements
    by_kind.setdefault(kind, []).append(type(cfg))
    model = Resolver(by_kind, implements).model(type(cfg))
    data = json.loads(json.dumps(cfg.model_dump(mode="json", serialize_as_any=True)))
    try:
        again = model.model_validate(data)
    except ValidationError as err:
        raise AssertionError(f"{type(cfg).__name__}: its own JSON dump does not validate:\n{err}") from None
    assert again.model_dump(serialize_as_any=True) == cfg.model_dump(serialize_as_any=True), (
        f"{type(cfg).__name__}: config changed in a JSON round trip:\n  before {cfg.model_dump()}\n"
        f"  after  {again.model_dump()}")
    try:
        model.model_validate({**data, "no_such_field_xyz": 1})
    except ValidationError:
        pass
    else:
        raise AssertionError(f"{type(cfg).__name__} accepts unknown keys; it must inherit extra='forbid' from "
                             f"{base.__name__}")
    model.model_json_schema()  # `lsvr schema` must be able to describe it
    return again


def assert_finite(value: Tensor, what: str) -> None:
    assert isinstance(value, Tensor), f"{what}: expected a Tensor, got {type(value).__name__}"
    if value.is_floating_point():
        bad = (~torch.isfinite(value.detach())).sum().item()
        assert bad == 0, f"{what}: {bad} non-finite values (NaN/inf) out of {value.numel()}"


def projection_loss(tensors: Iterable[Tensor], seed: int = 0) -> Tensor:
    """``sum(t * r)`` with fixed random ``r``: a scalar whose gradient reaches every element (a plain sum
    would give zero gradients through normalisation layers)."""
    gen = torch.Generator().manual_seed(seed)
    total = None
    for t in tensors:
        r = torch.randn(t.shape, generator=gen).to(t.device, t.dtype)
        term = (t * r).sum()
        total = term if total is None else total + term
    assert total is not None, "no outputs to back-propagate from"
    return total


def assert_gradients(module: nn.Module, what: str, allow_unused: Iterable[str] = ()) -> None:
    """Every trainable parameter got a finite gradient and at least one is non-zero.

    Args:
        allow_unused: ``fnmatch`` patterns of parameter names that may legitimately receive no gradient in
            this check (they would need ``find_unused_parameters`` under DDP).
    """
    patterns = tuple(allow_unused)
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    assert trainable, f"{what}: has no trainable parameters"
    missing = [n for n, p in trainable if p.grad is None and not any(fnmatch.fnmatch(n, pat) for pat in patterns)]
    assert not missing, (
        f"{what}: {len(missing)} trainable parameters received no gradient: {missing[:8]}; unused parameters break "
        f"DDP training. Freeze them (requires_grad=False), remove them, or list them in allow_unused")
    nonfinite = [n for n, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not nonfinite, f"{what}: non-finite gradients in {nonfinite[:8]}"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in trainable), (
        f"{what}: every gradient is zero")
