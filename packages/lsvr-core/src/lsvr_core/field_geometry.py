"""Geometry of declared per-instance fields, and the ``extras`` container of Targets / Predictions.

Every function takes a :class:`~lsvr_core.fields.TargetFieldSpec` and a value of its kind and returns the
transformed value (inputs are never modified). The conventions are those of lsvr-data's transforms and
:meth:`lsvr_core.structures.Predictions.to_original`: pixel coordinates are continuous (a pixel edge at every
integer), so a horizontal flip of an image ``W`` pixels wide maps x to ``W - x``.

Source: issue #12 item 4 (the kinds are documented in :mod:`lsvr_core.fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from lsvr_core.errors import DataError
from lsvr_core.fields import TargetFieldSpec


def _map_xy(spec: TargetFieldSpec, value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn((..., 2) xy) -> (..., 2)`` to the coordinates of a value (visibility handled for points)."""
    if spec.kind == "scalar":
        return value
    if spec.kind == "polygons":
        return [[fn(p.float()) for p in inst] for inst in value]
    if spec.kind == "boxes":
        return fn(value.reshape(-1, 2, 2).float()).reshape(-1, 4)
    out = value.clone().float()
    out[..., :2] = fn(out[..., :2])
    if out.shape[-1] == 3:  # (x, y, visibility): unlabelled points stay at (0, 0)
        out[..., :2] *= (out[..., 2:] > 0).to(out.dtype)
    return out


def field_affine(spec: TargetFieldSpec, value: Any, sx: float, sy: float, tx: float = 0.0, ty: float = 0.0) -> Any:
    """Points: x -> x * sx + tx, y -> y * sy + ty (resize: sx = W'/W, sy = H'/H; crop / pad: tx, ty offsets)."""
    return _map_xy(spec, value, lambda p: p * p.new_tensor([sx, sy]) + p.new_tensor([tx, ty]))


def field_hflip(spec: TargetFieldSpec, value: Any, width: float, permute: bool = True) -> Any:
    """Mirror x -> ``width`` - x; boxes swap x1/x2; points are reordered by ``spec.flip_perm`` when declared and
    ``permute`` (False only mirrors the coordinates: what ``Predictions.to_original`` does, as for keypoints)."""

    def mirror(p: Tensor) -> Tensor:
        out = p.clone()
        out[..., 0] = width - out[..., 0]
        return out

    out = _map_xy(spec, value, mirror)
    if spec.kind == "boxes":
        out = out[:, [2, 1, 0, 3]]
    elif spec.kind == "points" and spec.flip_perm is not None and permute:
        if out.shape[1] != len(spec.flip_perm):
            raise DataError(f"target field {spec.name!r}: {out.shape[1]} points per instance but flip_perm has "
                            f"{len(spec.flip_perm)}")
        out = out[:, list(spec.flip_perm)]
    return out


def field_clip(spec: TargetFieldSpec, value: Any, height: float, width: float) -> Any:
    """Keep geometry inside [0, width] x [0, height]: clamp boxes, polygons and 2-channel points; 3-channel points
    (x, y, visibility) outside become unlabelled (visibility 0, at (0, 0))."""
    if spec.kind == "scalar":
        return value
    hi = torch.tensor([width, height], dtype=torch.float32)

    def clamp(p: Tensor) -> Tensor:
        return torch.minimum(p.clamp(min=0), hi.to(p.dtype))

    if spec.kind == "points" and value.shape[-1] == 3:
        out = value.clone().float()
        x, y = out[..., 0], out[..., 1]
        outside = (x < 0) | (x > width) | (y < 0) | (y > height)
        out[..., 2][outside] = 0
        out[..., :2] *= (out[..., 2:] > 0).to(out.dtype)
        return out
    return _map_xy(spec, value, clamp)


def field_select(spec: TargetFieldSpec, value: Any, keep: Tensor) -> Any:
    """Instances chosen by a bool mask (N,) or an index tensor."""
    if spec.kind == "polygons":
        idx = keep.nonzero().flatten().tolist() if keep.dtype == torch.bool else keep.tolist()
        return [value[i] for i in idx]
    return value[keep]


def _length(spec: TargetFieldSpec, value: Any) -> int:
    return len(value) if spec.kind == "polygons" else int(value.shape[0])


_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
           "bool": torch.bool, "uint8": torch.uint8}


def _checked(spec: TargetFieldSpec, value: Any) -> Any:
    """Cast to the declared dtype and check the kind's shape."""
    if spec.kind == "polygons":
        return [[torch.as_tensor(p, dtype=_DTYPES[spec.dtype]).reshape(-1, 2) for p in inst] for inst in value]
    value = torch.as_tensor(value).to(_DTYPES[spec.dtype])
    ok = {"points": value.dim() == 3 and value.shape[-1] in (2, 3),
          "boxes": value.dim() == 2 and value.shape[-1] == 4,
          "scalar": value.dim() >= 1}[spec.kind]
    if not ok:
        expected = {"points": "(N, K, 2) or (N, K, 3)", "boxes": "(N, 4)", "scalar": "(N,) or (N, ...)"}[spec.kind]
        raise DataError(f"target field {spec.name!r} (kind {spec.kind}) must be {expected}, got {tuple(value.shape)}")
    return value


class ExtraFields:
    """Declared per-instance fields of one image: name -> (spec, value); ``Targets.extras``/``Predictions.extras``.

    Values are tensors whose first dimension is the instance (``polygons``: a list per instance). The
    geometric methods return new containers and apply each field's declared kind (:mod:`lsvr_core.fields`).
    """

    def __init__(self, items: dict[str, tuple[TargetFieldSpec, Any]] | None = None) -> None:
        self._items: dict[str, tuple[TargetFieldSpec, Any]] = dict(items or {})

    # --- access ---------------------------------------------------------------------------------------

    def add(self, spec: TargetFieldSpec, value: Any) -> None:
        """Set field ``spec.name`` (cast to ``spec.dtype``; DataError if the shape does not fit the kind)."""
        self._items[spec.name] = (spec, _checked(spec, value))

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, or ``default`` when absent."""
        item = self._items.get(name)
        return default if item is None else item[1]

    def spec(self, name: str) -> TargetFieldSpec:
        """The spec of a present field (KeyError if absent)."""
        return self._items[name][0]

    def require(self, name: str, image_id: int | None = None) -> Any:
        """The value of ``name``.

        Raises:
            DataError: the field is absent; names the image and the fields present.
        """
        if name not in self._items:
            where = f"image {image_id}: " if image_id is not None else ""
            present = ", ".join(self._items) or "none"
            raise DataError(f"{where}no per-instance field {name!r} in the targets (present: {present}); a dataset "
                            "fills it when configured to (e.g. extra_fields, landmarks)")
        return self._items[name][1]

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> Iterator[tuple[str, TargetFieldSpec, Any]]:
        for name, (spec, value) in self._items.items():
            yield name, spec, value

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ExtraFields({', '.join(f'{n}: {s.kind}' for n, (s, _) in self._items.items())})"

    def check_length(self, n: int, image_id: int | None = None) -> None:
        """Raise DataError if a field does not hold exactly ``n`` instances."""
        for name, spec, value in self.items():
            if _length(spec, value) != n:
                raise DataError(f"image {image_id}: target field {name!r} has {_length(spec, value)} instances, "
                                f"the boxes {n}")

    # --- geometry (new containers) ---------------------------------------------------------------------

    def map(self, fn: Callable[[TargetFieldSpec, Any], Any]) -> ExtraFields:
        return ExtraFields({name: (spec, fn(spec, value)) for name, spec, value in self.items()})

    def affine(self, sx: float, sy: float, tx: float = 0.0, ty: float = 0.0) -> ExtraFields:
        return self.map(lambda s, v: field_affine(s, v, sx, sy, tx, ty))

    def hflip(self, width: float, permute: bool = True) -> ExtraFields:
        return self.map(lambda s, v: field_hflip(s, v, width, permute))

    def clip(self, height: float, width: float) -> ExtraFields:
        return self.map(lambda s, v: field_clip(s, v, height, width))

    def select(self, keep: Tensor) -> ExtraFields:
        return self.map(lambda s, v: field_select(s, v, keep))

    def to(self, device: torch.device | str) -> ExtraFields:
        return self.map(lambda s, v: v if s.kind == "polygons" else v.to(device, non_blocking=True))

    def clone(self) -> ExtraFields:
        return self.map(lambda s, v: [[p.clone() for p in inst] for inst in v] if s.kind == "polygons" else v.clone())
