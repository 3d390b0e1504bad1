"""Learning-floor helper: train a small model from a run config on a fixed batch, then score it.

A learning-floor test builds the model, datasets and evaluator exactly as ``lsvr run`` does (the plugin
manager resolves every ``type:``), trains with a plain AdamW + one-cycle loop on the whole (small) train
split as one batch, and evaluates the configured evaluator on the val split. The test then asserts a metric
floor that an untrained or broken model cannot reach. Everything is seeded, so the result depends only on the
config, the seed and the torch build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from lsvr_core.config import build_config_model
from lsvr_core.config.loader import validate
from lsvr_core.engine.build import build_dataset, build_evaluator, build_model, seed_everything
from lsvr_core.plugins import get_plugin_manager
from lsvr_core.structures import collate


@dataclass
class FitResult:
    """What :func:`fit_and_score` measured: the evaluator's metrics and the total loss of every step."""

    metrics: dict[str, float]
    losses: list[float] = field(default_factory=list)

    def summary(self, *keys: str) -> dict[str, float]:
        """The named metrics (all ``AP`` metrics when none are named), rounded for messages."""
        names = keys or tuple(k for k in self.metrics if "AP" in k)
        return {k: round(float(self.metrics[k]), 4) for k in names if k in self.metrics}


def fit_and_score(raw: dict[str, Any], *, iters: int, lr: float, seed: int = 0, weight_decay: float = 0.0,
                  grad_clip: float | None = 35.0, pct_start: float = 0.1, recalibrate_bn: bool = False,
                  manager: Any = None) -> FitResult:
    """Validate ``raw`` as a run config, train ``iters`` full-batch steps on ``data.train``, score ``data.val``.

    Args:
        raw: a run config as a dict (``task``, ``model``, ``data`` with ``train`` and ``val``, ``eval``).
            The train split is loaded whole into one batch (keep it to a few small images).
        iters: optimiser steps (AdamW, one-cycle LR with peak ``lr`` and warm-up fraction ``pct_start``).
        grad_clip: max gradient norm, or None for no clipping.
        recalibrate_bn: before evaluating, re-estimate every BatchNorm's running statistics on the train batch
            (a cumulative average over one forward pass). For models whose BatchNorm momentum is too small for
            the running statistics to follow a short schedule (MutualGuide's necks use 0.01).
        manager: the plugin manager (default: the process-wide one).

    Returns:
        the evaluator's metrics on ``data.val`` and the total training loss of every step.

    Raises:
        AssertionError: a training loss is not finite.
    """
    manager = manager if manager is not None else get_plugin_manager()
    cfg: Any = validate(raw, build_config_model(manager), "fit_and_score")
    seed_everything(seed)
    model = build_model(cfg, manager)
    train_set = build_dataset(cfg, manager, train=True)
    val_set = build_dataset(cfg, manager, train=False)
    size_divisor = cfg.data.size_divisor
    batch = collate([train_set[i] for i in range(len(train_set))], size_divisor)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=iters, pct_start=pct_start)
    losses: list[float] = []
    model.train()
    for _ in range(iters):
        loss = sum(model(batch).values())
        value = float(loss.detach())
        assert math.isfinite(value), f"training loss is {value} at step {len(losses)}"
        losses.append(value)
        optimizer.zero_grad()
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        schedule.step()
    if recalibrate_bn:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # cumulative moving average
        with torch.no_grad():
            model(batch)
    model.eval()
    evaluator = build_evaluator(cfg, manager, val_set)
    assert evaluator is not None, "fit_and_score needs eval.evaluator"
    evaluator.reset()
    with torch.no_grad():
        for start in range(0, len(val_set), 8):
            samples = [val_set[i] for i in range(start, min(start + 8, len(val_set)))]
            evaluator.process(model(collate(samples, size_divisor)))
    return FitResult({k: float(v) for k, v in evaluator.evaluate().items()}, losses)
