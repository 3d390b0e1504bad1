"""``lsvr validate --build``: build a config's model on CPU and run it once, to prove the config before a GPU job.

The model is built exactly as ``lsvr run`` builds it (same registry, same factories), except that backbone
pretrained weights are not loaded (``pretrained``/``weights`` fields are switched off: the check is about the
architecture and its wiring, and runs offline). It then runs one training forward (the losses must be finite
scalars) and one inference forward (one :class:`~lsvr_core.structures.Predictions` per image) on a two-image
synthetic batch from :func:`lsvr_core.testing.make_batch`, whose targets fill every task's fields (boxes,
masks, polygons, keypoints, and every declared target field that has a ``derive`` function, such as LSNet's
contours or CenterNet's centres) and include a crowd box, an empty image and padding.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from lsvr_core.errors import ConfigError
from lsvr_core.models.detector import build_detector
from lsvr_core.structures import Predictions
from lsvr_core.testing.synthetic import make_batch


@dataclass
class BuildReport:
    """What ``lsvr validate --build`` prints.

    Attributes:
        parameters: number of parameter elements; ``trainable`` those with ``requires_grad``.
        image_size: (H, W) pixels of the synthetic batch (a multiple of ``data.size_divisor``).
        losses: the training forward's losses as floats.
        detections: predictions per image of the inference forward.
        seconds: wall time of build + both forwards.
        notes: what differs from a real run (e.g. pretrained weights not loaded).
    """

    parameters: int
    trainable: int
    image_size: tuple[int, int]
    losses: dict[str, float]
    detections: list[int]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in self.losses.items())
        return [f"built on CPU: {self.parameters:,} parameters ({self.trainable:,} trainable)",
                f"train forward on a 2-image {self.image_size[0]}x{self.image_size[1]} batch: {losses}",
                f"inference forward: {self.detections} detections per image ({self.seconds:.1f} s in all)",
                *self.notes]


def _without_pretrained(cfg: Any) -> tuple[Any, list[str]]:
    """A copy of ``cfg`` whose backbone loads no pretrained weights (fields ``pretrained`` / ``weights``)."""
    backbone = cfg.model.backbone
    update: dict[str, Any] = {}
    if getattr(backbone, "pretrained", False):
        update["pretrained"] = False
    if getattr(backbone, "weights", None):
        update["weights"] = None
    if not update:
        return cfg, []
    model = cfg.model.model_copy(update={"backbone": backbone.model_copy(update=update)})
    note = f"note: model.backbone.{'/'.join(update)} not loaded (the check builds the architecture only)"
    return cfg.model_copy(update={"model": model}), [note]


def build_check(cfg: Any, manager: Any, image_size: int = 128, seed: int = 0) -> BuildReport:
    """Build ``cfg``'s detector on CPU and run one training and one inference forward.

    Args:
        cfg: a validated run config (:func:`lsvr_core.config.load_config`).
        manager: the plugin manager (registry) that validated it.
        image_size: side of the square synthetic images, pixels; rounded up to a multiple of
            ``data.size_divisor``.
    Returns:
        a :class:`BuildReport`.
    Raises:
        ConfigError: a factory rejects the config, or the forwards return malformed outputs.
    """
    start = time.perf_counter()
    cfg, notes = _without_pretrained(cfg)
    torch.manual_seed(seed)
    divisor = cfg.data.size_divisor
    side = max(divisor, math.ceil(image_size / divisor) * divisor)
    model = build_detector(cfg, manager).cpu()
    derivable = [spec for spec in manager.target_fields().values() if spec.derive is not None]
    batch = make_batch((side, side), num_classes=cfg.model.num_classes, seed=seed, extra_fields=derivable)
    model.train()
    losses = model(batch)
    if not isinstance(losses, dict) or not losses:
        raise ConfigError(f"--build: the training forward returned {type(losses).__name__}, not a dict of losses")
    values = {}
    for name, value in losses.items():
        if not (torch.is_tensor(value) and value.numel() == 1 and torch.isfinite(value).all()):
            raise ConfigError(f"--build: training loss {name!r} is not a finite scalar: {value!r}")
        values[name] = float(value.detach())
    model.eval()
    with torch.no_grad():
        predictions = model(batch)
    if not (isinstance(predictions, list) and len(predictions) == len(batch.targets)
            and all(isinstance(p, Predictions) for p in predictions)):
        raise ConfigError("--build: the inference forward must return one Predictions per image")
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return BuildReport(parameters, trainable, (side, side), values, [len(p.boxes) for p in predictions],
                       time.perf_counter() - start, notes)
