#!/usr/bin/env python
"""Throughput of the training data pipeline (JPEG decode + annotations/landmarks + transforms + collate).

Builds the ``coco`` dataset in training mode (multi-scale keep-ratio resize, flip 0.5) and iterates a torch
DataLoader with ``lsvr_core.structures.collate`` for each worker count; prints images/s and the ratio to the
0-worker baseline measured in the same run. No model, no normalisation.

Usage:
    python tools/bench_data.py --root ../shared/data/coco_mini [--split train2017] [--task segm] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torchvision

from lsvr_core.engine.data import MainProcessCollate, worker_collate
from lsvr_core.structures import collate
from lsvr_data.coco import build_coco
from lsvr_data.config import CocoDatasetConfig, PipelineConfig


def measure(ds, workers: int, batch_size: int, passes: int, where: str) -> tuple[float, int, float]:  # noqa: ANN001
    """Images/s over ``passes`` full passes (after one warm-up batch); also images seen and mean H x W.

    ``where="main"`` is the engine's loader (workers return uint8 samples with their small tensors pickled in
    one piece, the main process collates: :class:`lsvr_core.engine.data.MainProcessCollate`); ``"worker"``
    collates inside the workers (torch's default path).
    """
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         collate_fn=collate if where == "worker" else worker_collate(workers),
                                         persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    if where == "main":
        loader = MainProcessCollate(loader, partial(collate, size_divisor=32), pin_memory=False)
    it = iter(loader)
    next(it)  # warm-up: worker start-up, first decode
    seen, pixels = 0, 0.0
    start = time.perf_counter()
    for p in range(passes):
        if p > 0:
            it = iter(loader)
        for batch in it:
            seen += len(batch.targets)
            pixels += sum(h * w for h, w in batch.image_sizes)
    elapsed = time.perf_counter() - start
    return seen / elapsed, seen, pixels / max(seen, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="COCO root (annotations/, train2017/, ...)")
    parser.add_argument("--split", default="train2017")
    parser.add_argument("--task", default="bbox", choices=("bbox", "segm", "pose_bbox", "pose_kbox"))
    parser.add_argument("--landmarks", action="store_true", help="also compute extreme points and contours")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--passes", type=int, default=2, help="full passes over the split per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads in the main process")
    parser.add_argument("--collate", nargs="+", default=["main", "worker"], choices=("main", "worker"),
                        help="where batches are collated (main: the engine's loader)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    pipeline = PipelineConfig(short_side_range=(480, 960), flip_prob=0.5)
    cfg = CocoDatasetConfig(split=args.split, pipeline=pipeline, landmarks=args.landmarks)
    ds = build_coco(cfg, root=args.root, train=True, task=args.task)
    print(f"device: cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cores visible)")
    print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} (shared machine?)")
    print(f"data: coco {args.split}, task {args.task}, landmarks {ds.landmarks}, {len(ds)} images, "
          f"batch {args.batch_size}, pipeline: keep-ratio short side U[480, 960] long <= 1333, flip 0.5; "
          f"decode + transforms + collate (pad to 32)")
    baseline = None
    for where in args.collate:
        for workers in args.workers:
            rate, seen, mean_px = measure(ds, workers, args.batch_size, args.passes, where)
            baseline = baseline or rate
            print(f"collate in {where:<6} workers={workers}: {rate:7.1f} images/s over {seen} images "
                  f"(mean image {mean_px / 1e6:.2f} MP), ratio to the first row: {rate / baseline:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
