"""Shape and unit contracts of the pluggable components (checked by :mod:`lsvr_core.testing`).

Feature maps are keyed by level name: backbones return ``c2``..``c5`` (strides 4..32), necks ``p3``..``p7``
(strides 8..128) or whatever their ``output_shape()`` declares. Strides are pixels of the (padded) input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor

    from lsvr_core.specs import ComponentSpec
    from lsvr_core.structures import Batch, Predictions, Targets


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (pixels) of one feature level."""

    channels: int
    stride: int


@runtime_checkable
class Registry(Protocol):
    """What a factory receives as its keyword-only ``registry`` argument: the plugin manager building it.

    Build nested components (a head's assigners and losses, a backbone's deformable layers) through it, never
    through a process-wide global, so a model comes entirely from the registry that built it.
    """

    def build(self, kind: str, cfg: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Build the ``kind`` component selected by ``cfg.type`` (``cfg`` None for config-less layers is not
        allowed here: use ``get(kind, name).build(None, ..., registry=self)``)."""
        ...

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The registered spec of ``kind`` ``name``; raises :class:`lsvr_core.errors.PluginError` listing the
        valid names when there is none."""
        ...


@runtime_checkable
class Backbone(Protocol):
    """``forward(images (B, 3, H, W) float32, normalised) -> {level: (B, C_l, H/s_l, W/s_l)}``."""

    def __call__(self, images: Tensor) -> dict[str, Tensor]: ...

    def output_shape(self) -> dict[str, ShapeSpec]: ...


@runtime_checkable
class Neck(Protocol):
    """``forward({level: feature}) -> {level: feature}``, built with the backbone's ``output_shape()``."""

    def __call__(self, features: dict[str, Tensor]) -> dict[str, Tensor]: ...

    def output_shape(self) -> dict[str, ShapeSpec]: ...


@runtime_checkable
class Head(Protocol):
    """A detection head over the neck's levels.

    ``forward(features, batch)`` in training mode returns a dict of scalar loss tensors (keys starting with
    ``loss``; the engine sums them). ``predict(features, batch)`` returns one :class:`Predictions` per image in
    the input frame (the detector maps them back to original coordinates).

    Optional, for ``lsvr export`` (:mod:`lsvr_core.export`): ``export_outputs(features) -> tuple[Tensor, ...]``
    returns the raw outputs (traceable: no data-dependent shapes; keep 4-D per-level maps so the decoder can
    read each level's grid) and ``decode_outputs(outputs, batch) -> list[Predictions]`` turns that tuple into
    exactly what ``predict`` returns. A head without them cannot be exported (a clear error says so). For
    ``lsvr export --postprocess``, ``export_postprocess(outputs, image_size, scale_factor, input_size) ->
    dict[str, Tensor]`` decodes one image inside the graph: ``image_size`` (2,) int64 ``[h, w]`` of the resized
    image, ``scale_factor`` (2,) float32 ``[sx, sy]`` resized / original, ``input_size`` the static padded
    ``(H, W)``; it returns ``boxes`` (K, 4) float32 xyxy pixels of the resized image, ``scores`` (K,), ``labels``
    (K,) int64, then task outputs (``contours``, ``keypoints``, declared extra fields), with fixed shapes up to
    NMS (``lsvr_core.api.topk_pairs`` / ``nms_keep``). Two-stage heads, whose decoding runs learned layers,
    implement ``export_outputs`` and ``export_postprocess`` without ``decode_outputs`` (then only
    ``--postprocess`` exports), may output ``roi_masks`` (K, M, M) and complete the runtime's predictions with
    ``finish_postprocessed(pred, targets) -> Predictions`` (e.g. paste masks as ``predict`` does). A head that
    cannot be exported may say why in a string attribute ``export_blocker`` (``lsvr export`` prints it).
    """

    def __call__(self, features: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]: ...

    def predict(self, features: dict[str, Tensor], batch: Batch) -> list[Predictions]: ...


@runtime_checkable
class Dataset(Protocol):
    """Map-style dataset: ``ds[i] -> (image (3, H, W) uint8, Targets)`` in the input frame.

    ``classes`` lists the class names in label order; ``aspect_ratios()`` returns W/H of every image (for
    aspect-ratio grouping) without decoding images.
    """

    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Tensor, Targets]: ...

    def aspect_ratios(self) -> list[float]: ...


@runtime_checkable
class Evaluator(Protocol):
    """Accumulates original-frame predictions and computes metrics named ``<iou_type>/<stat>``.

    The engine calls ``reset()``, ``process(predictions)`` per batch (on rank 0, with every rank's predictions
    gathered), then ``evaluate()``, which returns e.g. ``{"bbox/AP": 0.41, "bbox/AP50": 0.6, ...}``.
    """

    def reset(self) -> None: ...

    def process(self, predictions: list[Predictions]) -> None: ...

    def evaluate(self) -> dict[str, float]: ...
