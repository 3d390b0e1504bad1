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

from torch import Tensor, nn

from lsvr_core.errors import ConfigError


def check_exportable(model: Any) -> None:
    """Raise :class:`ConfigError` naming the head type when it lacks the export methods."""
    head = model.head
    missing = [m for m in ("export_outputs", "decode_outputs") if not callable(getattr(head, m, None))]
    if missing:
        raise ConfigError(f"{type(head).__name__} cannot be exported: it does not implement {' and '.join(missing)} "
                          "(see lsvr_core.contracts.Head: export_outputs / decode_outputs)")


class RawOutputs(nn.Module):
    """``images (B, 3, H, W) float32 0-255 -> head.export_outputs(features)`` of a built detector."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        check_exportable(detector)
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        det = self.detector
        x = (images - det.pixel_mean) / det.pixel_std
        features = det.backbone(x)
        if det.neck is not None:
            features = det.neck(features)
        return tuple(det.head.export_outputs(features))


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
