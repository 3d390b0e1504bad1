"""Exponential moving average of the model weights (``runtime.ema``), on ``torch.optim.swa_utils.AveragedModel``.

After every optimizer step the average moves towards the trained weights:
``ema = d_t * ema + (1 - d_t) * weights`` for every floating parameter and buffer (BatchNorm statistics
included), with the decay ramped up over the first updates, ``d_t = decay * (1 - exp(-t / tau))`` for the t-th
update (YOLOX / MutualGuide HEAD ``utils/ema.py``: decay 0.9998, tau 2000; MutualGuide spec §7). The first
update copies the weights (AveragedModel's rule; the ramp gives d_1 = 5e-4 there anyway). Integer buffers
(``num_batches_tracked``) are copied.

With EMA on, checkpoints hold the averaged weights under ``model`` (what ``eval``, ``predict``, ``init_from``
and ``best.pt`` use), the trained weights under ``model_raw`` and the averager's state under ``ema``; the
trainer evaluates the averaged model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def ramped_ema_fn(decay: float, tau: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """A ``multi_avg_fn`` for :class:`AveragedModel`: lerp towards the weights with ``1 - d_t``,
    ``d_t = decay * (1 - exp(-t / tau))`` where t = ``num_averaged + 1`` is the update's index."""

    @torch.no_grad()
    def update(ema: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        d = decay * (1.0 - math.exp(-(float(num_averaged) + 1.0) / tau))
        if ema[0].is_floating_point():
            torch._foreach_lerp_(ema, current, 1.0 - d)
        else:
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)

    return update


def build_ema(model: nn.Module, decay: float, tau: float) -> AveragedModel:
    """The averaged copy of ``model`` (parameters and buffers), on the model's device, frozen.

    Returns:
        an :class:`AveragedModel`; call ``update_parameters(model)`` after each optimizer step and use
        ``.module`` for evaluation and saving.
    """
    ema = AveragedModel(model, multi_avg_fn=ramped_ema_fn(decay, tau), use_buffers=True)
    ema.module.eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema
