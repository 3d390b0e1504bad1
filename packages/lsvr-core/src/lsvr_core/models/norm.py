"""Normalisation layer choices shared by the built-in backbones and necks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from lsvr_core.errors import ConfigError

# every BatchNorm: 1-D/2-D/3-D and SyncBatchNorm (all ``_BatchNorm``), and torchvision's frozen one
BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)


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
    """Put every BatchNorm-like layer of ``module`` (1-D, 2-D, 3-D, synchronised, frozen) in eval mode: running
    statistics are used and not updated."""
    for m in module.modules():
        if isinstance(m, BATCH_NORMS):
            m.eval()


class FrozenStagesMixin(nn.Module):
    """Frozen stages and BatchNorm eval mode for backbones (mmdet's ``frozen_stages`` / ``norm_eval``).

    A subclass lists its frozen modules in ``_frozen_modules()`` (e.g. the stem and the first
    ``frozen_stages`` stages), sets ``self.norm_eval`` and calls ``self._freeze()`` at the end of ``__init__``:
    the frozen modules lose ``requires_grad`` and, like every BatchNorm when ``norm_eval``, stay in eval mode
    through ``train()``.
    """

    norm_eval: bool = False

    def _frozen_modules(self) -> list[nn.Module]:
        return []

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenStagesMixin:
        """Set train/eval mode, keeping frozen stages (and all BatchNorms when ``norm_eval``) in eval mode."""
        super().train(mode)
        if mode:
            for module in self._frozen_modules():
                module.eval()
            if self.norm_eval:
                set_batch_norm_eval(self)
        return self
