"""Benchmark one LSNet R-50 FPN training step (recipe ``lsnet:bbox_r50_1x_coco``) at 1333x800, batch 2 (issue 15).

Two variants of the same model and batch, each in a fresh subprocess (so peak memory and the kernel backend are
its own):

* ``fp32 + torchvision DCN``: fp32, ``LSVR_KERNEL_BACKEND=torch`` (the head's DCNs call torchvision's op, the
  pyramid DCNs the grid_sample reference);
* ``bf16 + Triton``: bf16 autocast, ``LSVR_KERNEL_BACKEND=triton`` (both deformable ops on the Triton kernels).

A step is forward (losses), backward and an SGD update; timed after warm-up steps (the first ones autotune the
kernels), median of CUDA-event timings. Reports images/s, step time and peak memory allocated (MiB), and the
ratios bf16+Triton / fp32+torchvision. ``pretrained: false``: the weights do not matter for speed.

    python tools/bench_train_step.py                     # CUDA -> benchmarks/train_step/train_step.{json,md}
    python tools/bench_train_step.py --dry-run           # CPU, Triton interpreter, R-18, 64x96 images, 1 step

The dry run proves the script, not the speed: under the interpreter bfloat16 takes the PyTorch path
(``lsvr_ops_triton.dispatch.kernels_compute``), so its "bf16 + Triton" variant runs no Triton kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"fp32 + torchvision DCN": ("fp32", "torch"), "bf16 + Triton": ("bf16", "triton")}
RECIPE = "lsnet:bbox_r50_1x_coco"


def _targets(size: tuple[int, int], image_id: int) -> Any:
    import torch

    from lsvr_core.testing import make_targets
    from lsvr_data.fields import CONTOURS, EXTREME_POINTS

    h, w = size
    boxes = torch.tensor([[0.10, 0.15, 0.45, 0.60], [0.50, 0.30, 0.90, 0.95], [0.05, 0.70, 0.20, 0.98],
                          [0.60, 0.05, 0.80, 0.25]]) * torch.tensor([w, h, w, h])
    return make_targets(boxes, torch.tensor([0, 5, 17, 2]), size, image_id=image_id, seed=image_id,
                        extra_fields=(EXTREME_POINTS, CONTOURS))  # the LSNet landmarks, as the datasets derive them


def measure(precision: str, image_hw: tuple[int, int], batch: int, warmup: int, steps: int, dry: bool) -> dict:
    """One variant in this process (the backend comes from ``LSVR_KERNEL_BACKEND``)."""
    import torch

    from lsvr_core.config import load_config
    from lsvr_core.models.detector import build_detector
    from lsvr_core.plugins import get_plugin_manager
    from lsvr_core.structures import Batch

    device = "cpu" if dry else "cuda"
    torch.manual_seed(0)
    manager = get_plugin_manager()
    overrides = ["model.backbone.pretrained=false"]
    if dry:  # a small model keeps the CPU run short; same structure (ResNet, FPN, DCN towers, pyramid DCN)
        overrides += ["model.backbone.depth=18", "model.neck.out_channels=32", "model.head.feat_channels=32",
                      "model.head.stacked_convs=1", "model.head.norm_groups=8"]
    cfg = load_config(RECIPE, manager, overrides)
    model = build_detector(cfg, manager).to(device).train()
    images = torch.rand(batch, 3, *image_hw, generator=torch.Generator().manual_seed(0)) * 255
    data = Batch(images, [_targets(image_hw, i) for i in range(batch)]).to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step() -> float:
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = model(data)
        loss = sum(v.float() for k, v in losses.items() if k.startswith("loss"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    losses = [step() for _ in range(warmup)]
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        t0 = time.perf_counter()
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            losses.append(step())
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            losses.append(step())
            times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    row = {"step_ms": ms, "images_per_s": batch / ms * 1e3, "losses": losses,
           "backend": os.environ.get("LSVR_KERNEL_BACKEND", "auto")}
    if device == "cuda":
        row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if not all(v == v and abs(v) < float("inf") for v in losses):
        row["error"] = f"non-finite loss {losses}"
    return row


def environment(dry: bool) -> dict[str, str]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "recipe": RECIPE,
           "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "unavailable"
    env["device"] = "CPU (dry run, Triton interpreter)" if dry else torch.cuda.get_device_name(0)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, interpreter, tiny images, one step")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", default=None, help="HxW (default 800x1333; dry run 64x96)")
    parser.add_argument("--warmup", type=int, default=None, help="default 3 (dry run 0)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10, dry run 1)")
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "train_step")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in (args.size or ("64x96" if args.dry_run else "800x1333")).split("x"))
    warmup = args.warmup if args.warmup is not None else (0 if args.dry_run else 3)
    steps = args.steps if args.steps is not None else (1 if args.dry_run else 10)
    if args.variant:
        row = measure(VARIANTS[args.variant][0], size, args.batch, warmup, steps, args.dry_run)
        print("RESULT " + json.dumps(row))
        return 0
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported (torch below may import it)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("bench_train_step: needs a CUDA GPU (or --dry-run)", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"env": environment(args.dry_run), "image_hw": list(size), "batch": args.batch,
                              "warmup": warmup, "steps": steps, "variants": []}
    for name, (precision, backend) in VARIANTS.items():
        if args.dry_run:  # in this process (no peak memory on the CPU): saves two interpreter start-ups
            os.environ["LSVR_KERNEL_BACKEND"] = backend
            try:
                row = {"name": name, **measure(precision, size, args.batch, warmup, steps, True)}
            except Exception as err:  # noqa: BLE001 - reported like a failed subprocess
                row = {"name": name, "error": f"{type(err).__name__}: {err}"}
            result["variants"].append(row)
            print(json.dumps(row), flush=True)
            continue
        env = {**os.environ, "LSVR_KERNEL_BACKEND": backend}
        cmd = [sys.executable, __file__, "--variant", name, "--batch", str(args.batch),
               "--size", "x".join(map(str, size)), "--warmup", str(warmup), "--steps", str(steps)]
        cmd += ["--dry-run"] if args.dry_run else []
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        row = {"name": name, **(json.loads(line[7:]) if line else {"error": proc.stderr.strip()[-1500:]})}
        result["variants"].append(row)
        print(json.dumps(row), flush=True)
    base, ours = result["variants"]
    if "images_per_s" in base and "images_per_s" in ours:
        speed = ours["images_per_s"] / base["images_per_s"]
        result["ratios"] = {"images_per_s (bf16+Triton / fp32+torchvision)": speed}
        if base.get("peak_mib") and ours.get("peak_mib"):
            result["ratios"]["peak_mib (bf16+Triton / fp32+torchvision)"] = ours["peak_mib"] / base["peak_mib"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_step.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result.get("ratios", {})))
    return 0 if all("error" not in v for v in result["variants"]) else 1


if __name__ == "__main__":
    sys.exit(main())
