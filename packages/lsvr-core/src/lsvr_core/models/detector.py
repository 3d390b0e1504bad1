"""The detector every run trains: backbone -> neck -> head, built from the validated run config."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.structures import Batch, Predictions


class Detector(nn.Module):
    """Normalise images, run backbone -> neck (optional) -> head.

    ``forward(batch)``: ``batch.images`` (B, 3, H, W) float32 RGB in [0, 255], zero padded to the right and
    bottom. In training mode it returns the head's dict of scalar losses; in eval mode one
    :class:`Predictions` per image in the *original* frame (the head's input-frame predictions mapped back
    with each image's ``Targets.scale`` / ``flipped``). In training mode a head that defines
    ``transform_train_batch(batch) -> Batch`` gets the raw batch first (images still in [0, 255]) and the
    backbone sees what it returns (MutualGuide's MixUp uses this with ``Batch.progress``).

    Args:
        backbone, neck, head: built components (``neck`` may be None).
        pixel_mean, pixel_std: per-channel RGB statistics in 0-255 units.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module | None, head: nn.Module,
                 pixel_mean: tuple[float, float, float], pixel_std: tuple[float, float, float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1), False)

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and strides of the features the head sees (the neck's, or the backbone's without one)."""
        return (self.neck or self.backbone).output_shape()

    def normalize(self, batch: Batch) -> Tensor:
        """``(images - mean) / std`` with the padding (outside each ``image_size``) set back to zero.

        Returns:
            (B, 3, H, W) float32.
        """
        images = (batch.images.float() - self.pixel_mean) / self.pixel_std
        height, width = images.shape[-2:]
        rows = torch.arange(height, device=images.device)
        cols = torch.arange(width, device=images.device)
        sizes = torch.tensor([list(s) for s in batch.image_sizes], device=images.device).view(-1, 2)  # (B, 2)
        valid = (rows.view(1, -1, 1) < sizes[:, 0].view(-1, 1, 1)) & (cols.view(1, 1, -1) < sizes[:, 1].view(-1, 1, 1))
        return images * valid.unsqueeze(1)  # (B, 3, H, W)

    def features(self, batch: Batch) -> dict[str, Tensor]:
        """The head's input feature maps ``{level: (B, C, H / s, W / s)}``."""
        features = self.backbone(self.normalize(batch))
        return self.neck(features) if self.neck is not None else features

    def forward(self, batch: Batch) -> dict[str, Tensor] | list[Predictions]:
        if self.training and hasattr(self.head, "transform_train_batch"):
            batch = self.head.transform_train_batch(batch)  # e.g. MixUp of the images (and a record of it)
        features = self.features(batch)
        if self.training:
            return self.head(features, batch)
        predictions = self.head.predict(features, batch)
        return [p.to_original(t) for p, t in zip(predictions, batch.targets, strict=True)]


def check_task(manager: Any, head_type: str, task: str) -> None:
    """Raise :class:`ConfigError` if the registered head ``head_type`` does not list ``task`` in its spec."""
    spec = manager.get("head", head_type)
    if spec.tasks and task not in spec.tasks:
        raise ConfigError(f"head {head_type!r} does not support task {task!r}; supported tasks: "
                          f"{', '.join(spec.tasks)}")


def build_detector(cfg: Any, manager: Any) -> Detector:
    """Build the :class:`Detector` of a validated run config.

    The backbone is built with ``factory(cfg.model.backbone)``, the neck with the backbone's
    ``output_shape()``, the head with the neck's ``output_shape()``, ``cfg.model.num_classes`` and ``cfg.task``.

    Raises:
        ConfigError: the head does not support ``cfg.task``, or a component rejects its inputs.
    """
    model = cfg.model
    check_task(manager, model.head.type, cfg.task)
    backbone = manager.build("backbone", model.backbone)
    shape = backbone.output_shape()
    neck = None
    if model.neck is not None:
        neck = manager.build("neck", model.neck, shape)
        shape = neck.output_shape()
    head = manager.build("head", model.head, shape, model.num_classes, cfg.task)
    return Detector(backbone, neck, head, model.pixel_mean, model.pixel_std)
