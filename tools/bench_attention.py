"""Benchmark 2-D relative-position attention (LESA spec §5, §6): the fused Triton kernels vs the
materialised reference, PyTorch SDPA with a materialised bias, and FlexAttention with a score_mod.

For each shape (B, G, H, W, Dqk, Dv) and backend it times forward and forward+backward (median of CUDA-event
timings after warm-up) and records the peak memory above the inputs, then prints a table with achieved
TFLOP/s (attention matmuls: 2 B G L^2 (Dqk + Dv) forward, 2.5x that for backward, as FlashAttention counts)
against the device's measured dense matmul rate, and the ratio of each backend's time to ours. Results go to
``benchmarks/attention_<device>_<dtype>.{json,md}``.

Optionally (``--train-step``) it measures the peak memory of one LESA-R50 Mask R-CNN training step at
1024 x 1024, batch 2 (the reference recipe's model).

Usage::

    python tools/bench_attention.py                      # CUDA, spec shapes, bf16 and fp32
    python tools/bench_attention.py --train-step         # plus the Mask R-CNN step memory
    python tools/bench_attention.py --shapes r50         # only the LESA-R50 stage shapes (the GPU check's step c)
    python tools/bench_attention.py --device cpu --smoke # CPU check of the script (tiny shapes; the Triton
                                                         # backend only with TRITON_INTERPRET=1, the interpreter)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

# (label, B, G, H, W, Dqk, Dv): LESA spec §2 table and §6 shape list
SPEC_SHAPES = [
    ("R50 l4 b1-2 (32^2)", 2, 8, 32, 32, 32, 64),
    ("R50 l3 b1-5 (64^2)", 2, 8, 64, 64, 16, 32),
    ("R50 l4 b0 (64^2)", 2, 8, 64, 64, 32, 64),
    ("WRN l4 b1-2 (40^2)", 2, 8, 40, 40, 64, 128),
    ("WRN l3 b1-5 (80^2)", 2, 8, 80, 80, 32, 64),
    ("WRN l4 b0 (80^2)", 2, 8, 80, 80, 64, 128),
    ("batch 8 (32^2)", 8, 8, 32, 32, 16, 32),
    ("batch 1 (64^2)", 1, 8, 64, 64, 64, 128),
]
SMOKE_SHAPES = [("smoke 6x5", 1, 2, 6, 5, 8, 16), ("smoke 4x8", 2, 2, 4, 8, 16, 32)]
BACKENDS = ("triton", "flex", "torch", "reference")
NAMES = {"triton": "ours (Triton)", "flex": "FlexAttention", "torch": "SDPA + bias", "reference": "materialised"}


def select_shapes(spec: str, pool: list[tuple]) -> list[tuple]:
    """``all``, ``r50`` / ``wrn`` (labels starting so), or comma-separated indices into ``pool``."""
    if spec == "all":
        return pool
    if spec in ("r50", "wrn"):
        return [s for s in pool if s[0].lower().startswith(spec)]
    return [pool[int(i)] for i in spec.split(",")]


def attention_flops(b: int, g: int, length: int, dqk: int, dv: int, backward: bool) -> float:
    fwd = 2.0 * b * g * length * length * (dqk + dv)
    return fwd * (3.5 if backward else 1.0)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], device: str, warmup: int, iters: int) -> float:
    """Median milliseconds of ``fn``."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_mib(fn: Callable[[], Any], device: str) -> float | None:
    """Peak memory (MiB) allocated by ``fn`` above what was allocated before it (CUDA only)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def matmul_tflops(device: str, dtype: torch.dtype) -> float:
    """Measured dense matmul rate (TFLOP/s) of an n x n x n product in ``dtype``."""
    n = 8192 if device == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = time_fn(lambda: a @ b, device, 3, 10)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def make_inputs(shape: tuple, device: str, dtype: torch.dtype) -> list[torch.Tensor]:
    _, b, g, h, w, dqk, dv = shape
    length = h * w
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*size: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*size, generator=gen) * scale).to(device)

    return [rnd(b, g, length, dqk, scale=0.5).to(dtype).requires_grad_(),
            rnd(b, g, length, dqk, scale=0.5).to(dtype).requires_grad_(),
            rnd(b, g, length, dv).to(dtype).requires_grad_(),
            rnd(2 * h - 1, dqk, scale=dqk**-0.5).requires_grad_(),
            rnd(2 * w - 1, dqk, scale=dqk**-0.5).requires_grad_(),
            (torch.rand(g, generator=gen) + 0.5).to(device).requires_grad_(),
            (torch.rand(g, generator=gen) + 0.5).to(device).requires_grad_()]


def run_case(shape: tuple, backend: str, device: str, dtype: torch.dtype, warmup: int, iters: int,
             max_materialised_gib: float) -> dict[str, Any]:
    from lsvr_ops_triton.relpos_attention import relpos_attention

    label, b, g, h, w, dqk, dv = shape
    length = h * w
    row: dict[str, Any] = {"shape": label, "B": b, "G": g, "H": h, "W": w, "L": length, "Dqk": dqk, "Dv": dv,
                           "backend": backend, "dtype": str(dtype).replace("torch.", "")}
    map_gib = b * g * length * length * 4 / 2**30
    if backend in ("reference", "torch") and map_gib * 6 > max_materialised_gib:
        row["skipped"] = f"materialises ~6 x {map_gib:.2f} GiB (limit {max_materialised_gib} GiB)"
        return row
    q, k, v, th, tw, a, c = make_inputs(shape, device, dtype)
    grad = torch.randn(b, g, length, dv, device=device, dtype=dtype)

    def forward() -> torch.Tensor:
        if device == "cpu" and backend == "flex":  # eager CPU FlexAttention refuses inputs that require grad
            return relpos_attention(*(t.detach() for t in (q, k, v, th, tw)), h, w, a.detach(), c.detach(),
                                    backend=backend)
        return relpos_attention(q, k, v, th, tw, h, w, a, c, backend=backend)

    def forward_backward() -> None:
        out = forward()
        torch.autograd.grad(out, (q, k, v, th, tw, a, c), grad)

    try:
        with torch.no_grad():
            row["fwd_ms"] = time_fn(forward, device, warmup, iters)
            row["fwd_peak_mib"] = peak_mib(forward, device)
        if device == "cpu" and backend == "flex":
            row["fwdbwd_skipped"] = "FlexAttention has no CPU backward"
        else:
            row["fwdbwd_ms"] = time_fn(forward_backward, device, warmup, iters)
            row["fwdbwd_peak_mib"] = peak_mib(forward_backward, device)
    except Exception as err:  # noqa: BLE001 - report and continue with the other backends
        row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
    for mode, backward in (("fwd", False), ("fwdbwd", True)):
        if f"{mode}_ms" in row:
            row[f"{mode}_tflops"] = attention_flops(b, g, length, dqk, dv, backward) / (row[f"{mode}_ms"] * 1e-3) / 1e12
    return row


def train_step_memory(device: str) -> dict[str, Any]:
    """Peak memory of one training step of the reference LESA-R50 Mask R-CNN at 1024^2, batch 2."""
    from lsvr_core.config import load_config
    from lsvr_core.models.detector import build_detector
    from lsvr_core.plugins import get_plugin_manager
    from lsvr_core.structures import Batch
    from lsvr_core.testing import make_targets

    manager = get_plugin_manager()
    cfg = load_config("lesa:mask_rcnn_lesa_r50_1024_20e_coco", manager)
    model = build_detector(cfg, manager).to(device).train()
    size = (1024, 1024)
    boxes = torch.tensor([[100.0, 120, 400, 500], [500, 300, 900, 1000], [50, 700, 200, 980]])
    targets = [make_targets(boxes, torch.tensor([0, 5, 17]), size, image_id=i) for i in range(2)]
    batch = Batch(torch.rand(2, 3, *size) * 255, targets).to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def step() -> None:
        losses = model(batch)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    step()  # allocate optimizer state
    ms = time_fn(step, device, 1, 3)
    return {"what": "LESA-R50 Mask R-CNN train step, 1024x1024, batch 2, fp32", "step_ms": ms,
            "peak_mib": peak_mib(step, device) if device == "cuda" else None,
            "max_allocated_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None}


def environment(device: str) -> dict[str, str]:
    env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "unavailable"
    env["device"] = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    env["tf32"] = str(torch.backends.cuda.matmul.allow_tf32)
    return env


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# relpos attention benchmark ({results['env']['device']})", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in results["env"].items()), ""]
    for dtype, block in results["runs"].items():
        lines += [f"## {dtype} (dense matmul {block['matmul_tflops']:.1f} TFLOP/s)", "",
                  "| shape | L | Dqk/Dv | backend | fwd ms | fwd+bwd ms | fwd+bwd TFLOP/s | % matmul | peak MiB "
                  "(fwd+bwd) | time / ours (fwd+bwd) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in block["rows"]:
            ours = next((r for r in block["rows"] if r["shape"] == row["shape"] and r["backend"] == "triton"), {})
            note = row.get("skipped") or row.get("error")
            ratio = (f"{row['fwdbwd_ms'] / ours['fwdbwd_ms']:.2f}" if "fwdbwd_ms" in row and "fwdbwd_ms" in ours
                     else "")
            pct = f"{100 * row['fwdbwd_tflops'] / block['matmul_tflops']:.0f}%" if "fwdbwd_tflops" in row else ""

            def fmt(key: str, spec: str = ".2f", row: dict = row) -> str:
                return format(row[key], spec) if row.get(key) is not None else ""

            lines.append(f"| {row['shape']} | {row['L']} | {row['Dqk']}/{row['Dv']} | {NAMES[row['backend']]} | "
                         f"{fmt('fwd_ms')} | {fmt('fwdbwd_ms')} | {fmt('fwdbwd_tflops', '.1f')} | {pct} | "
                         f"{fmt('fwdbwd_peak_mib', '.0f')} | {ratio or note or ''} |")
        lines.append("")
    if "train_step" in results:
        lines += ["## Training step", "", json.dumps(results["train_step"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (a check that the script runs)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--max-materialised-gib", type=float, default=40.0)
    parser.add_argument("--train-step", action="store_true", help="also measure a Mask R-CNN training step")
    parser.add_argument("--shapes", default="all",
                        help="all, r50, wrn, or comma-separated indices (into SMOKE_SHAPES with --smoke)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for attention_<device>.json/.md (default benchmarks/; smoke runs: not written)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; use --device cpu --smoke to check the script", file=sys.stderr)
        return 2
    backends = [b for b in args.backends.split(",") if b]
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        backends = [b for b in backends if b != "triton"]  # compiled Triton needs CUDA; the interpreter runs on CPU
    shapes = select_shapes(args.shapes, SMOKE_SHAPES if args.smoke else SPEC_SHAPES)
    results: dict[str, Any] = {"env": environment(args.device), "runs": {}}
    print(json.dumps(results["env"]))
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        block = {"matmul_tflops": matmul_tflops(args.device, dtype), "rows": []}
        print(f"{name}: dense matmul {block['matmul_tflops']:.2f} TFLOP/s")
        for shape in shapes:
            for backend in backends:
                row = run_case(shape, backend, args.device, dtype, args.warmup, args.iters, args.max_materialised_gib)
                block["rows"].append(row)
                print(json.dumps(row), flush=True)
        results["runs"][name] = block
    if args.train_step:
        results["train_step"] = train_step_memory(args.device)
        print(json.dumps(results["train_step"]))
    out = args.out or (None if args.smoke else ROOT / "benchmarks")
    if out is not None:
        args.out = out
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"attention_{args.device}" + ("_smoke" if args.smoke else "")
        (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
        (args.out / f"{stem}.md").write_text(markdown(results))
        print(f"wrote {args.out / stem}.json and .md")
    else:
        print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
