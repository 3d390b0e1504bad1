"""Declared per-instance target fields: what a plugin adds to :class:`~lsvr_core.structures.Targets` (torch-free).

Core's ``Targets`` / ``Predictions`` hold only what every detection task shares (boxes, labels, crowd flags,
masks / polygons, keypoints, image metadata). A method that needs more per instance (LSNet's extreme points
and 36-point contours, VOC's ``difficult`` flags, CenterNet's object centres) declares each field with a
:class:`TargetFieldSpec` from the ``lsvr_target_fields`` hook; the values travel in ``Targets.extras`` /
``Predictions.extras`` and every geometric transform applies to them according to the declared ``kind``
(see :mod:`lsvr_core.field_geometry`).

Kinds and their shapes (N instances, pixels xy in the current frame):

========== ======================== ================================================================
kind       value                    resize / flip / crop
========== ======================== ================================================================
points     (N, K, 2) or (N, K, 3)   x*sx+tx, y*sy+ty; flip x -> W - x then reorder K by ``flip_perm``;
                                    3rd channel = visibility: unlabelled (0) points stay at (0, 0),
                                    points leaving a crop become unlabelled; 2-channel points clamp
boxes      (N, 4) xyxy              corners as points; flip swaps x1 / x2; crop clamps
polygons   per instance a list of   every vertex as a point (no reordering); crop clamps
           (P, 2) tensors
scalar     (N,) or (N, ...)         unchanged (only instance selection applies): flags, ids, scores
========== ======================== ================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lsvr_core.errors import ConfigError

FieldKind = Literal["points", "boxes", "polygons", "scalar"]
FIELD_KINDS: tuple[str, ...] = ("points", "boxes", "polygons", "scalar")
FIELD_DTYPES: tuple[str, ...] = ("float32", "float64", "int64", "int32", "bool", "uint8")


@dataclass(frozen=True)
class TargetFieldSpec:
    """A per-instance field a plugin adds to ``Targets.extras`` / ``Predictions.extras``.

    Attributes:
        name: key in ``extras`` (unique across plugins; two plugins declaring one name is an error).
        kind: ``points``, ``boxes``, ``polygons`` or ``scalar``: how geometric transforms apply (module docs).
        dtype: torch dtype name of the values (``float32``, ``int64``, ``bool``, ...); values are cast to it.
        flip_perm: ``points`` only: after mirroring, point ``k`` of the flipped set is point ``flip_perm[k]`` of
            the original (left/right swap, e.g. COCO keypoints or LSNet's (top, left, bottom, right) extremes).
            ``None`` keeps the order.
        summary: one line for ``lsvr plugins`` and error messages.
        derive: optional lazily imported ``"module:function"`` computing the field from the original-frame
            :class:`~lsvr_core.structures.Targets` (``(targets) -> (N, ...) tensor``); datasets call it for the
            names listed in their config's ``extra_fields`` before any transform, so a plugin can add a field
            to any dataset without editing it.
        plugin, distribution: filled in by the plugin manager.
    """

    name: str
    kind: FieldKind
    dtype: str = "float32"
    flip_perm: tuple[int, ...] | None = None
    summary: str = ""
    derive: str | None = None
    plugin: str = ""
    distribution: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"target field {self.name!r}: kind {self.kind!r} is not one of {', '.join(FIELD_KINDS)}")
        if self.dtype not in FIELD_DTYPES:
            raise ValueError(f"target field {self.name!r}: dtype {self.dtype!r} is not one of "
                             f"{', '.join(FIELD_DTYPES)}")
        if self.flip_perm is not None:
            if self.kind != "points":
                raise ValueError(f"target field {self.name!r}: flip_perm applies to kind 'points' only")
            if sorted(self.flip_perm) != list(range(len(self.flip_perm))):
                raise ValueError(f"target field {self.name!r}: flip_perm {self.flip_perm} is not a permutation")
        if self.derive is not None and ":" not in self.derive:
            raise ValueError(f"target field {self.name!r}: derive must be 'module:function', got {self.derive!r}")

    def derive_fn(self) -> Any:
        """Import and return the ``derive`` callable.

        Raises:
            ConfigError: the field declares no ``derive``.
        """
        if self.derive is None:
            raise ConfigError(f"target field {self.name!r} ({self.distribution or 'unknown plugin'}) cannot be "
                              "derived from the ground truth: it declares no derive function")
        module, _, attr = self.derive.partition(":")
        return getattr(importlib.import_module(module), attr)


def resolve_target_fields(names: Iterable[str], declared: Mapping[str, TargetFieldSpec],
                          where: str = "extra_fields") -> list[TargetFieldSpec]:
    """Look up field names among the declared ones.

    Args:
        names: requested field names (e.g. a dataset config's ``extra_fields``).
        declared: name -> spec, as returned by the plugin manager's ``target_fields()``.
        where: the config path named in the error.
    Raises:
        ConfigError: a name nobody declared; the message lists the declared fields.
    """
    out = []
    for name in names:
        spec = declared.get(name)
        if spec is None:
            valid = ", ".join(sorted(declared)) or "none declared"
            raise ConfigError(f"{where}: unknown target field {name!r}; declared fields: {valid} (a plugin declares "
                              "fields with the lsvr_target_fields hook)")
        out.append(spec)
    return out
