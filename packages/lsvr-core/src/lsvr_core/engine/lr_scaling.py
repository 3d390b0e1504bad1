"""Linear learning-rate scaling to the actual total batch (``optim.auto_scale_lr``)."""

from __future__ import annotations

from lsvr_core.config.sections import OptimSection


def effective_lr(optim: OptimSection, batch_size: int, world_size: int) -> tuple[float, str]:
    """The lr a run uses and a short description of it for the start line.

    Args:
        optim: the ``optim`` section (``lr`` and ``auto_scale_lr``).
        batch_size: images per process per iteration (``data.batch_size``).
        world_size: number of processes.
    Returns:
        (lr, text): with ``auto_scale_lr.enabled``, lr = ``optim.lr * batch_size * world_size / base_batch_size``
        (the linear scaling rule, Goyal et al. 2017, as mmdetection's ``auto_scale_lr``); otherwise ``optim.lr``.
        ``text`` reads e.g. ``batch 2x8=16 | lr 0.01`` or ``batch 2x1=2 | lr 0.00125 (auto-scaled: 0.01 x 2/16)``.
    """
    total = batch_size * world_size
    text = f"batch {batch_size}x{world_size}={total}"
    if not optim.auto_scale_lr.enabled:
        return optim.lr, f"{text} | lr {optim.lr:g}"
    base = optim.auto_scale_lr.base_batch_size
    lr = optim.lr * total / base
    return lr, f"{text} | lr {lr:g} (auto-scaled: {optim.lr:g} x {total}/{base})"
