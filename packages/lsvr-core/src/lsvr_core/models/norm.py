"""Normalisation layer choices shared by the built-in backbones and necks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from lsvr_core.errors import ConfigError

BATCH_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d)


def batch_norm_layer(name: str) -> Callable[[int], nn.Module]:
    """Return the 2-D norm class selected by a ``norm`` config value.

    Args:
        name: ``bn`` (``nn.BatchNorm2d``), ``frozen_bn`` (``torchvision.ops.FrozenBatchNorm2d``: fixed statistics
            and affine parameters, an affine map ``y = x * scale + shift``) or ``syncbn`` (``nn.SyncBatchNorm``,
            statistics reduced over the DDP process group).
    Raises:
        ConfigError: unknown name.
    """
    table: dict[str, Callable[[int], nn.Module]] = {
        "bn": nn.BatchNorm2d,
        "frozen_bn": FrozenBatchNorm2d,
        "syncbn": nn.SyncBatchNorm,
    }
    if name not in table:
        raise ConfigError(f"norm {name!r} is not one of {', '.join(table)}")
    return table[name]


def group_norm_layer(num_groups: int = 32) -> Callable[[int], nn.Module]:
    """``nn.GroupNorm`` with ``num_groups`` groups as a ``norm_layer(channels)`` callable."""
    return partial(nn.GroupNorm, num_groups)


def set_batch_norm_eval(module: nn.Module) -> None:
    """Put every BatchNorm-like layer of ``module`` in eval mode (running statistics are used and not updated)."""
    for m in module.modules():
        if isinstance(m, BATCH_NORMS):
            m.eval()
