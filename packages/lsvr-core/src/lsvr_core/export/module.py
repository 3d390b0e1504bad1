"""The module that is exported: normalisation, backbone, neck and the head's raw outputs.

A head supports export by implementing two methods (documented in :mod:`lsvr_core.contracts`):

* ``export_outputs(features) -> tuple[Tensor, ...]``: the raw outputs, a flat tuple of tensors;
* ``decode_outputs(outputs, batch) -> list[Predictions]``: input-frame predictions from that tuple, the same
  as ``predict(features, batch)``.

Inputs of the graph: ``images`` (B, 3, H, W) float32 RGB in 0-255, already resized by the dataset's test
pipeline and padded (right/bottom) to (H, W) with the pixel mean, so that padding normalises to 0 exactly as
the eager :class:`~lsvr_core.models.detector.Detector` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lsvr_core.errors import ConfigError


def check_exportable(model: Any, postprocess: bool = False) -> None:
    """Raise :class:`ConfigError` naming the head type when it cannot be exported.

    A raw export needs ``export_outputs`` and ``decode_outputs``; a ``--postprocess`` export needs
    ``export_outputs`` (and ``export_postprocess``, see :func:`check_postprocessable`). A head whose decoding
    runs learned layers (two-stage heads: ``export_postprocess`` without ``decode_outputs``) exports only with
    ``--postprocess``; a head with an ``export_blocker`` attribute (a string) cannot be exported at all.
    """
    head = model.head
    name = type(head).__name__
    blocker = getattr(head, "export_blocker", None)
    if blocker:
        raise ConfigError(f"{name} cannot be exported: {blocker}")

    def has(method: str) -> bool:
        return callable(getattr(head, method, None))

    if not postprocess and has("export_outputs") and has("export_postprocess") and not has("decode_outputs"):
        raise ConfigError(f"{name} cannot be exported without --postprocess: it has no decode_outputs (its decoding "
                          "runs learned layers, so it must be in the graph); pass --postprocess")
    missing = [m for m in ("export_outputs",) + (() if postprocess else ("decode_outputs",)) if not has(m)]
    if missing:
        raise ConfigError(f"{type(head).__name__} cannot be exported: it does not implement {' and '.join(missing)} "
                          "(see lsvr_core.contracts.Head: export_outputs / decode_outputs)")


class RawOutputs(nn.Module):
    """``images (B, 3, H, W) float32 0-255 -> head.export_outputs(features)`` of a built detector."""

    def __init__(self, detector: nn.Module, postprocess: bool = False) -> None:
        super().__init__()
        check_exportable(detector, postprocess)
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        det = self.detector
        x = (images - det.pixel_mean) / det.pixel_std
        features = det.backbone(x)
        if det.neck is not None:
            features = det.neck(features)
        return tuple(det.head.export_outputs(features))


POSTPROCESS_INPUTS = ("images", "image_size", "scale_factor")
PREDICTION_FIELDS = ("boxes", "scores", "labels", "contours", "keypoints", "masks", "roi_masks")


def check_postprocessable(model: Any) -> None:
    """Raise :class:`ConfigError` naming the head type when it cannot decode inside the graph."""
    head = model.head
    if not callable(getattr(head, "export_postprocess", None)):
        raise ConfigError(f"--postprocess: {type(head).__name__} does not implement export_postprocess (decoding and "
                          "NMS in the graph); export without --postprocess and decode with "
                          "lsvr_core.export.runtime.ExportedDetector")


class Postprocessed(nn.Module):
    """``(images, image_size, scale_factor) -> detections`` of a built detector (``lsvr export --postprocess``).

    The head's ``export_postprocess(raw, image_size, scale_factor, input_size)`` gets the raw outputs, the two
    size inputs below and the static padded input size ``(H, W)``.

    Inputs: ``images`` (1, 3, H, W) float32 0-255, mean-padded as for :class:`RawOutputs`; ``image_size`` (2,)
    int64 ``[h, w]`` of the resized image inside the padding; ``scale_factor`` (2,) float32 ``[sx, sy]``,
    resized / original size. Outputs: the values of ``head.export_postprocess(raw, image_size, scale_factor)``
    in :attr:`output_names` order (set by :meth:`probe`): ``boxes`` (K, 4) float32 xyxy and ``scores`` (K,) in
    the resized image's pixels, ``labels`` (K,) int64, then task outputs such as ``contours`` (K, P, 2) or
    ``keypoints`` (K, 17, 3); K is data-dependent (<= the head's max detections).
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        check_exportable(detector, postprocess=True)
        check_postprocessable(detector)
        self.raw = RawOutputs(detector, postprocess=True)
        self.output_names: list[str] = []

    def _decode(self, images: Tensor, image_size: Tensor, scale_factor: Tensor) -> dict[str, Tensor]:
        head: Any = self.raw.detector.head
        return dict(head.export_postprocess(self.raw(images), image_size, scale_factor, tuple(images.shape[-2:])))

    @torch.no_grad()
    def probe(self, images: Tensor, image_size: Tensor, scale_factor: Tensor) -> list[str]:
        """Run once eagerly and record the output names (boxes, scores, labels first)."""
        names = list(self._decode(images, image_size, scale_factor))
        if names[:3] != ["boxes", "scores", "labels"]:
            raise ConfigError(f"{type(self.raw.detector.head).__name__}.export_postprocess must return boxes, scores, "
                              f"labels first; it returned {names}")
        self.output_names = names
        return names

    def forward(self, images: Tensor, image_size: Tensor, scale_factor: Tensor) -> tuple[Tensor, ...]:
        out = self._decode(images, image_size, scale_factor)
        return tuple(out[name] for name in self.output_names)


def pad_with_mean(image: Tensor, size: tuple[int, int], pixel_mean: Tensor) -> Tensor:
    """Pad a (3, h, w) 0-255 image at the right and bottom to ``size`` = (H, W) with the pixel mean.

    Raises:
        ConfigError: the image is larger than ``size`` (the model was exported for a smaller input).
    """
    h, w = image.shape[-2:]
    if h > size[0] or w > size[1]:
        raise ConfigError(f"image of {h}x{w} after preprocessing does not fit the exported input {size[0]}x{size[1]};"
                          " export with a larger --image-size or --dynamic")
    out = pixel_mean.view(3, 1, 1).expand(3, size[0], size[1]).clone()
    out[:, :h, :w] = image.float()
    return out
