"""Benchmark the batched mutual-guidance assigner against per-image loops (lsvr-mutualguide).

Scene: a batch of B images at S x S (default 32 at 320, the v1 recipe), the v1 anchors (12,750 at 320),
1..max_gt random objects per image, predicted boxes = anchors moved by N(0, 0.5) offsets, random logits over
C classes. Timed, each after warm-up, as the median of --repeats runs:

* ``batched``: one :class:`MutualGuideAssigner` call on the whole batch (the training path);
* ``loop_batched_code``: the same code called once per image (B = 1) in a Python loop;
* ``loop_reference``: the per-image, per-object loop written from spec §3 (``reference_assign``).

Prints the device, versions, shapes and the ratio of each loop to the batched call. Usage::

    python tools/bench_assigner.py [--device cuda] [--batch 32] [--size 320] [--max-gt 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torchvision

from lsvr_mutualguide.anchors import generate_anchors, reference_grids
from lsvr_mutualguide.assigners import MutualGuideAssigner
from lsvr_mutualguide.box_coding import decode
from lsvr_mutualguide.reference_assign import assign_v1_image


def make_scene(batch: int, size: int, max_gt: int, num_classes: int, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    levels = 4 if size < 512 else 5
    anchors = generate_anchors(reference_grids(size, levels), (size, size))
    counts = torch.randint(1, max_gt + 1, (batch,), generator=gen)
    g = int(counts.max())
    xy = torch.rand(batch, g, 2, generator=gen) * size * 0.7
    wh = torch.rand(batch, g, 2, generator=gen) * size * 0.5 + 8
    gt = torch.cat([xy, (xy + wh).clamp(max=size)], -1)
    labels = torch.randint(0, num_classes, (batch, g), generator=gen)
    valid = torch.arange(g)[None] < counts[:, None]
    offsets = torch.randn(batch, len(anchors), 4, generator=gen) * 0.5
    pred = decode(offsets, anchors)
    logits = torch.randn(batch, len(anchors), num_classes, generator=gen) * 2 - 3
    to = lambda t: t.to(device)  # noqa: E731
    return (to(anchors), to(pred), to(logits), to(gt), to(labels), to(valid), to(torch.zeros_like(valid)), counts)


def timed(fn, device: str, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--max-gt", type=int, default=20)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    anchors, pred, logits, gt, labels, valid, crowd, counts = make_scene(
        args.batch, args.size, args.max_gt, args.classes, args.device)
    assigner = MutualGuideAssigner()  # default cpu_chunk=1: per-image chunks on the CPU
    one_call = MutualGuideAssigner(cpu_chunk=args.batch)

    def batched():
        return assigner(anchors, pred, logits, gt, labels, valid, crowd)

    def batched_one_call():
        return one_call(anchors, pred, logits, gt, labels, valid, crowd)

    def loop_batched_code():
        return [assigner(anchors, pred[i:i + 1], logits[i:i + 1], gt[i:i + 1, :n], labels[i:i + 1, :n],
                         valid[i:i + 1, :n], crowd[i:i + 1, :n]) for i, n in enumerate(counts.tolist())]

    def loop_reference():
        return [assign_v1_image(anchors, pred[i], logits[i], gt[i, :n], labels[i, :n])
                for i, n in enumerate(counts.tolist())]

    # the three agree on the classification states (checked once, outside the timing)
    out, ref = batched(), loop_reference()
    agree = all(torch.equal(out.cls_state[i], ref[i][0]) and torch.equal(out.reg_pos[i], ref[i][2])
                for i in range(args.batch))
    whole = batched_one_call()
    same = all(torch.equal(getattr(out, f), getattr(whole, f)) for f in vars(out))

    cuda = args.device.startswith("cuda")
    dev_name = torch.cuda.get_device_name(args.device) if cuda else platform.processor() or "cpu"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"device: {args.device} ({dev_name}), torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs{load}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}")
    print(f"shapes: batch {args.batch}, input {args.size}x{args.size}, anchors {len(anchors)}, classes {args.classes}, "
          f"objects per image 1..{args.max_gt} (mean {counts.float().mean():.1f}, padded G {gt.shape[1]})")
    print(f"batched result equals the per-object reference loop: {agree}; "
          f"chunked call equals one whole-batch call: {same}")
    t_b = timed(batched, args.device, args.repeats)
    t_w = timed(batched_one_call, args.device, args.repeats)
    t_l = timed(loop_batched_code, args.device, args.repeats)
    t_r = timed(loop_reference, args.device, args.repeats)
    print(f"{'method':<44}{'ms / batch':>12}{'time / assigner call':>22}")
    for name, t in [("assigner call (default; CPU: per-image chunks)", t_b),
                    ("whole batch in one call (cpu_chunk=B)", t_w),
                    ("per-image loop of the same code", t_l), ("per-image, per-object reference", t_r)]:
        print(f"{name:<44}{t * 1e3:>12.1f}{t / t_b:>22.2f}")


if __name__ == "__main__":
    main()
