"""Benchmark CPV corner pooling: ``torch.cummax`` on flipped tensors (lsvr_lsnet.cpv.corner_pool) against a
row-by-row running maximum (the loop the CornerNet CUDA extension performs), forward + backward.

    python tools/bench_corner_pool.py [--device cuda] [--repeat 20]

Prints device, versions, shapes, the time per call and the ratio to the loop baseline; checks both give the
same output first.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from lsvr_lsnet.cpv.corner_pool import corner_pool


def running_max(x: torch.Tensor, direction: str) -> torch.Tensor:
    """Baseline: one torch.maximum per row / column, scanning in the pool's direction."""
    dim = 2 if direction in ("top", "bottom") else 3
    n = x.shape[dim]
    order = range(n - 1, -1, -1) if direction in ("top", "left") else range(n)
    out, cur = [None] * n, None
    for i in order:
        sl = x.select(dim, i)
        cur = sl if cur is None else torch.maximum(cur, sl)
        out[i] = cur
    return torch.stack(out, dim=dim)


def bench(fn, x: torch.Tensor, direction: str, repeat: int) -> float:
    def once() -> None:
        y = fn(x, direction)
        y.sum().backward()
        x.grad = None

    once()
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        once()
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {dev} ({name}), torch threads {torch.get_num_threads()}, load average {load:.1f}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}")
    print(f"{'shape (N, C, H, W)':24} {'direction':9} {'cummax ms':>10} {'loop ms':>10} {'loop / cummax':>14}")
    for shape in ((2, 64, 100, 168), (2, 64, 50, 84), (2, 16, 20, 32)):
        x = torch.randn(*shape, device=dev, requires_grad=True)
        for direction in ("top", "left"):
            assert torch.equal(corner_pool(x, direction), running_max(x, direction))
            a = bench(corner_pool, x, direction, args.repeat)
            b = bench(running_max, x, direction, args.repeat)
            print(f"{str(shape):24} {direction:9} {a:10.2f} {b:10.2f} {b / a:14.2f}")


if __name__ == "__main__":
    main()
