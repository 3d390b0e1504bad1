"""Evaluation: inference over the (sharded) val set, gathering to rank 0, the evaluator, drawn samples."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from lsvr_core.engine import distributed as D
from lsvr_core.engine.corrupt import SkipLog, is_placeholder, take_skipped
from lsvr_core.engine.data import eval_loader
from lsvr_core.engine.optim import Precision
from lsvr_core.engine.progress import EvalProgress
from lsvr_core.structures import Predictions


def to_cpu_fp32(pred: Predictions) -> Predictions:
    """Move a prediction to the CPU with floating tensors in float32 (bf16 autocast outputs included)."""
    pred = pred.to("cpu")
    for f in fields(pred):
        value = getattr(pred, f.name)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
            setattr(pred, f.name, value.float())
    return pred


def eval_subset(dataset: Any, max_images: int | None) -> Any:
    """The first ``max_images`` images of ``dataset`` (all when None)."""
    if max_images is None or max_images >= len(dataset):
        return dataset
    return Subset(dataset, range(max_images))


@torch.no_grad()
def predict_dataset(model: nn.Module, dataset: Any, *, device: torch.device, precision: Precision, dist: D.DistInfo,
                    batch_size: int, num_workers: int, size_divisor: int, channels_last: bool = False,
                    skip_log: SkipLog | None = None, log: Any = None) -> list[tuple[int, Predictions]]:
    """Predictions (original frame, CPU, float32) of every image, gathered from all ranks, sorted by index.

    Images dropped by ``data.on_corrupt: skip`` get no prediction (and are noted in ``skip_log``). With ``log``
    (the engine logger), rank 0 shows progress (:class:`~lsvr_core.engine.progress.EvalProgress`).

    Returns:
        ``[(dataset index, Predictions)]`` on every rank.
    """
    loader = eval_loader(dataset, batch_size=batch_size, rank=dist.rank, world_size=dist.world_size,
                         num_workers=num_workers, pin_memory=device.type == "cuda", size_divisor=size_divisor)
    was_training = model.training
    model.eval()
    local: list[tuple[int, Predictions]] = []
    progress = EvalProgress(log, len(loader.sampler) if hasattr(loader, "sampler") else len(dataset),
                            enabled=dist.is_main)
    try:
        for batch, indices in loader:
            take_skipped(batch.targets, skip_log)
            keep = [not is_placeholder(t) for t in batch.targets]
            batch = batch.to(device)
            if channels_last:
                batch.images = batch.images.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                preds = model(batch)
            local += [(i, to_cpu_fp32(p)) for i, p, k in zip(indices, preds, keep, strict=True) if k]
            progress.update(len(indices))
    finally:
        model.train(was_training)
        progress.close()
    gathered = [item for part in D.all_gather_objects(local, dist) for item in part]
    return sorted(gathered, key=lambda item: item[0])


def score(evaluator: Any, predictions: list[tuple[int, Predictions]]) -> dict[str, float]:
    """Run ``reset / process / evaluate`` over the gathered predictions (rank 0)."""
    evaluator.reset()
    chunk = 16
    preds = [p for _, p in predictions]
    for i in range(0, len(preds), chunk):
        evaluator.process(preds[i : i + chunk])
    return {k: float(v) for k, v in evaluator.evaluate().items()}
