"""Optimizers (SGD, AdamW) with parameter groups, and the autocast/grad-scaler precision policy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from lsvr_core.config.sections import OptimSection


def param_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    """Trainable parameters in one or two groups.

    With ``no_decay_norm_bias`` every parameter with fewer than 2 dimensions (biases, norm scales and shifts)
    goes to a group with ``weight_decay=0``. Frozen parameters (``requires_grad=False``) are left out.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if no_decay_norm_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimSection) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over :func:`param_groups`; ``cfg.lr`` is the base lr of the global batch."""
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_norm_bias)
    if not groups:
        from lsvr_core.errors import ConfigError

        raise ConfigError("the model has no trainable parameters (every stage frozen?)")
    if cfg.type == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


@dataclass(frozen=True)
class Precision:
    """How forward passes run: ``dtype`` None means fp32 without autocast."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Enabled for fp16 on CUDA only (bf16 and fp32 need no loss scaling)."""
        enabled = self.dtype is torch.float16 and self.device_type == "cuda"
        return torch.amp.GradScaler(self.device_type, enabled=enabled)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto``: bf16 autocast on CUDA devices that support it, else fp32; fp16 is CUDA only."""
    if name == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return Precision(device.type, torch.bfloat16 if bf16 else None)
    if name == "fp16" and device.type != "cuda":
        from lsvr_core.errors import ConfigError

        raise ConfigError(f"runtime.precision=fp16 needs a CUDA device (got {device}); use bf16 or fp32")
    return Precision(device.type, {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name])


def grad_norm_params(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for group in optimizer.param_groups:
        yield from (p for p in group["params"] if p.grad is not None)
