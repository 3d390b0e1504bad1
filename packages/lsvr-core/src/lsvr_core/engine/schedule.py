"""Per-iteration learning-rate schedule: linear warm-up times step, cosine or constant decay."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable

import torch

from lsvr_core.config.sections import ScheduleSection


def lr_factor(cfg: ScheduleSection, iters_per_epoch: int, total_iters: int) -> Callable[[int], float]:
    """The multiplier of the base lr at global iteration ``it`` (0-based).

    ``total_iters`` is what the run trains, ``min(epochs * iters_per_epoch, max_iters)``: with a
    ``max_iters`` cap the cosine decay ends at the cap.

    Warm-up (mmdetection's linear rule): ``ratio + (1 - ratio) * it / warmup_iters`` for ``it < warmup_iters``.
    ``step``: times ``gamma`` for each milestone epoch already reached (milestone ``m`` starts at iteration
    ``m * iters_per_epoch``). ``cosine``: ``min + (1 - min) * (1 + cos(pi * it / total_iters)) / 2``.
    """
    steps = sorted(m * iters_per_epoch for m in cfg.milestones)
    total = max(total_iters, 1)

    def factor(it: int) -> float:
        if cfg.policy == "step":
            base = cfg.gamma ** bisect_right(steps, it)
        elif cfg.policy == "cosine":
            base = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(it, total) / total))
        else:
            base = 1.0
        if it < cfg.warmup_iters:
            base *= cfg.warmup_ratio + (1 - cfg.warmup_ratio) * it / cfg.warmup_iters
        return base

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleSection, iters_per_epoch: int,
                    total_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` stepped once per iteration (its state is checkpoint-safe)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, iters_per_epoch, total_iters))
