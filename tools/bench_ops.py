"""Benchmark lsvr_ops_triton's deformable ops against their baselines (issues 5 and 9).

    python tools/bench_ops.py --mode cpu            # fast CPU path vs torchvision, 2 threads (issue 9)
    python tools/bench_ops.py --mode cuda           # Triton kernels vs torchvision / grid_sample (issue 5)
    python tools/bench_ops.py --mode cuda --dry-run # the same rows on CPU: Triton interpreter, tiny shapes (CI)

Ours = ``lsvr_ops_triton.deform_conv2d`` / ``pyramid_deform_conv2d`` through the dispatcher (CPU: the
sampling + matmul path; CUDA: the Triton kernels). Baselines: ``torchvision.ops.deform_conv2d`` (DCN v2 with
mask) and the ``F.grid_sample`` + matmul reference for the pyramid op. fwd+bwd computes the gradients of all
inputs (input, offset, mask, weight, bias). Times: CPU the minimum over repetitions (the machine may be
shared), CUDA the median of CUDA-event timings. Prints device, versions, commit and every shape; writes the
same to ``benchmarks/ops_<mode>.txt`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if "--dry-run" in sys.argv:  # the interpreter must be on before triton is first imported (torch may import it)
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEVEL_STRIDES = (8, 16, 32, 64, 128)


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "packages/lsvr-ops-triton", "tools"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(mode: str) -> dict[str, str]:
    import lsvr_ops_triton

    env = {"mode": mode, "commit": commit(), "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    env.update({f"backend.{k}": v for k, v in lsvr_ops_triton.backend_report().items()})
    if mode == "cuda":
        env["device"] = torch.cuda.get_device_name(0)
        env["driver_cuda"] = str(torch.version.cuda)
    else:
        env["device"] = f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs visible)"
        env["threads"] = str(torch.get_num_threads())
        env["load_average_at_start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())  # other users of the CPUs
    return env


# ------------------------------------------------------------------------------------------------ timing
def time_cpu(fns: dict[str, Callable[[], Any]], reps: int, budget_s: float = 2.0) -> dict[str, float]:
    """Minimum wall time in ms of each function over at least ``reps`` rounds (more for fast functions, up to
    about ``budget_s`` per row and 50 rounds) after one warm-up; the functions run alternately within a round,
    so load from other users of the machine hits all of them alike."""
    start = time.perf_counter()
    for fn in fns.values():
        fn()
    warm = time.perf_counter() - start
    rounds = max(reps, min(50, int(budget_s / max(warm, 1e-6))))
    best = {name: math.inf for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: t * 1e3 for name, t in best.items()}


def time_cuda(fn: Callable[[], Any], reps: int) -> tuple[float, float | None]:
    """(median ms over ``reps`` CUDA-event timings, peak MiB allocated above the start) after 3 warm-ups.
    Tensors on the CPU (the dry run): (median wall ms, no warm-up, None)."""
    if not torch.cuda.is_available() or os.environ.get("LSVR_BENCH_DRY_RUN") == "1":
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times), None
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), peak


# ------------------------------------------------------------------------------------------------- cases
def dcn_inputs(n: int, c: int, h: int, w: int, device: str, dtype: torch.dtype, offset_std: float) -> dict:
    """DCN v2 3×3, stride 1, pad 1, c→c channels, with mask and bias (the LSNet head tower layer)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    t = {"input": torch.randn(n, c, h, w, generator=g), "offset": torch.randn(n, 18, h, w, generator=g) * offset_std,
         "mask": torch.rand(n, 9, h, w, generator=g), "weight": torch.randn(c, c, 3, 3, generator=g) / math.sqrt(9 * c),
         "bias": torch.randn(c, generator=g)}
    return {k: v.to(device, dtype).requires_grad_() for k, v in t.items()}


def dcn_fns(t: dict, baseline_dtype: torch.dtype | None) -> dict[str, Callable[[], torch.Tensor]]:
    from lsvr_ops_triton import deform_conv2d

    def ours() -> torch.Tensor:
        return deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], t["mask"], padding=1)

    def tv() -> torch.Tensor:
        a = {k: v if baseline_dtype is None else v.to(baseline_dtype) for k, v in t.items()}
        return torchvision.ops.deform_conv2d(a["input"], a["offset"], a["weight"], a["bias"], padding=1, mask=a["mask"])

    return {"ours": ours, "baseline": tv}


def pyramid_inputs(n: int, c: int, base_hw: tuple[int, int], feat_hws: list[tuple[int, int]], device: str,
                   dtype: torch.dtype, offset_std: float) -> dict:
    g = torch.Generator(device="cpu").manual_seed(0)
    t = {"offset": torch.randn(n, 18, *base_hw, generator=g) * offset_std,
         "weight": torch.randn(c, c, 3, 3, generator=g) / math.sqrt(9 * c)}
    t.update({f"feature{i}": torch.randn(n, c, *hw, generator=g) for i, hw in enumerate(feat_hws)})
    return {k: v.to(device, dtype).requires_grad_() for k, v in t.items()}


def pyramid_fns(t: dict, base_hw: tuple[int, int], feat_hws: list[tuple[int, int]]) -> dict[str, Callable]:
    """All visits of one base level (LSNet spec §2.3 stage 2): outputs concatenated like the head does."""
    from lsvr_ops_triton import pyramid_deform_conv2d
    from lsvr_ops_triton.reference import pyramid_deform_conv2d_reference

    scales = [(hw[0] / base_hw[0], hw[1] / base_hw[1]) for hw in feat_hws]

    def run(fn: Callable) -> Callable[[], torch.Tensor]:
        return lambda: torch.cat([fn(t[f"feature{i}"], t["offset"], t["weight"], s) for i, s in enumerate(scales)], 1)

    return {"ours": run(pyramid_deform_conv2d), "baseline": run(pyramid_deform_conv2d_reference)}


def fwd_bwd(fn: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        out = fn()
        out.backward(torch.ones_like(out))
        for t in leaves:
            t.grad = None

    return step


def level_sizes(image_hw: tuple[int, int], pad_to: int = 32) -> list[tuple[int, int]]:
    """P3–P7 sizes of an image padded to a multiple of ``pad_to`` (ceil at each stride-2 step, like convs)."""
    h, w = (math.ceil(s / pad_to) * pad_to for s in image_hw)
    sizes = [(h // 8, w // 8)]
    for _ in range(4):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    return sizes


def visits(level: int) -> list[int]:
    """Pyramid levels sampled for base level ``level`` (LSNet spec §2.3 stage 2 step 1)."""
    return [0, 1, 2] if level == 0 else [4, 3, 2] if level == 4 else [level, level - 1, level + 1]


# --------------------------------------------------------------------------------------------------- CPU
def _cpu_times(fns: dict[str, Callable[[], torch.Tensor]], leaves: list[torch.Tensor], reps: int) -> dict:
    fwd = time_cpu({f"{k}_fwd_ms": (lambda fn=fn: fn().detach()) for k, fn in fns.items()}, reps)
    both = time_cpu({f"{k}_fwd_bwd_ms": fwd_bwd(fn, leaves) for k, fn in fns.items()}, reps)
    return {**fwd, **both}


def run_cpu(reps: int, groups: tuple[str, ...] = ("issue9", "demo")) -> list[dict]:
    """``groups``: "issue9" (the issue's two DCN v2 shapes), "demo" (the LSNet demo head's CPU shapes)."""
    os.environ["LSVR_KERNEL_BACKEND"] = "torch"
    rows = []
    demo = level_sizes((128, 128))
    dcn_shapes = [("issue9", 4, 256, (40, 40)), ("issue9", 4, 128, (64, 64))] if "issue9" in groups else []
    if "demo" in groups:
        dcn_shapes += [("demo head P3", 8, 64, demo[0]), ("demo head P4", 8, 64, demo[1])]
    for tag, n, c, hw in dcn_shapes:
        t = dcn_inputs(n, c, *hw, "cpu", torch.float32, 2.0)
        fns = dcn_fns(t, None)
        row = {"op": "deform_conv2d(mask)", "shape": f"{tag}: N={n} C={c}->{c} {hw[0]}x{hw[1]} 3x3 fp32",
               "baseline": "torchvision"}
        conv = {"conv2d": lambda t=t: F.conv2d(t["input"], t["weight"], t["bias"], padding=1)}
        row.update(_cpu_times({**fns, **conv}, list(t.values()), reps))
        rows.append(row)
    for level in range(5 if "demo" in groups else 0):  # the demo head's pyramid calls: each base level, 3 visits
        feats = [demo[v] for v in visits(level)]
        t = pyramid_inputs(8, 64, demo[level], feats, "cpu", torch.float32, 2.0)
        fns = pyramid_fns(t, demo[level], feats)
        row = {"op": "pyramid_deform_conv2d x3", "baseline": "grid_sample reference",
               "shape": f"demo head: N=8 C=64->64 base P{level + 3} {demo[level]} from {feats} fp32"}
        row.update(_cpu_times(fns, list(t.values()), reps))
        rows.append(row)
    for row in rows:
        row["speedup_fwd"] = row["baseline_fwd_ms"] / row["ours_fwd_ms"]
        row["speedup_fwd_bwd"] = row["baseline_fwd_bwd_ms"] / row["ours_fwd_bwd_ms"]
    return rows


# -------------------------------------------------------------------------------------------------- CUDA
def device_peaks(dtype: torch.dtype, device: str = "cuda") -> dict[str, float]:
    """Matmul TFLOP/s (8192³; CPU 256³) in ``dtype`` and copy GB/s (1 GiB; CPU 16 MiB), measured now."""
    n, size = (8192, 2**30) if device == "cuda" else (256, 2**24)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms, _ = time_cuda(lambda a=a, b=b: torch.matmul(a, b), 10)
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms_copy, _ = time_cuda(lambda dst=dst, src=src: dst.copy_(src), 10)
    del a, b, src, dst
    return {"matmul_tflops": 2 * n**3 / ms / 1e9, "copy_gbs": 2 * size / ms_copy / 1e6}


def run_cuda(reps: int, batches: list[int], dtypes: list[torch.dtype], device: str = "cuda",
             image_hw: tuple[int, int] = (800, 1333), channels: int = 256, levels: int = 5,
             offset_stds: tuple[float, ...] = (2.0, 0.0)) -> tuple[list[dict], dict]:
    """Issue 5's shapes: P3–P7 of ``image_hw`` (LSNet head: 256 channels, 3x3 DCN v2 and the pyramid DCN visits);
    ``device``/``image_hw``/``channels``/``levels`` exist for the CPU dry run (Triton interpreter)."""
    os.environ["LSVR_KERNEL_BACKEND"] = "triton"
    sizes = level_sizes(image_hw)
    peaks = {str(dt).removeprefix("torch."): device_peaks(dt, device) for dt in dtypes}
    if "bfloat16" not in peaks:  # every row is also compared with the bf16 tensor-core rate
        peaks["bfloat16"] = device_peaks(torch.bfloat16, device)
    rows = []
    for dtype in dtypes:
        dname = str(dtype).removeprefix("torch.")
        for n in batches:
            for offset_std in offset_stds:
                offs = "zero offsets" if offset_std == 0 else f"offsets~N(0,{offset_std:g}px)"
                for level, hw in enumerate(sizes[:levels]):
                    t = dcn_inputs(n, channels, *hw, device, dtype, offset_std)
                    base_dtype = None
                    try:
                        dcn_fns(t, None)["baseline"]()
                    except RuntimeError:
                        base_dtype = torch.float32  # torchvision has no kernel for this dtype: it computes in fp32
                    fns = dcn_fns(t, base_dtype)
                    flops = 2 * n * channels * channels * 9 * hw[0] * hw[1]
                    out_bytes = n * channels * hw[0] * hw[1] * dtype.itemsize
                    byts = sum(v.numel() * v.element_size() for v in t.values()) + out_bytes
                    rows.append(_cuda_row("deform_conv2d(mask)", f"N={n} P{level + 3} {hw} {channels}->{channels} "
                                          f"{dname} {offs}",
                                          "torchvision" + ("" if base_dtype is None else " (fp32 compute)"),
                                          fns, list(t.values()), flops, byts, peaks[dname], reps,
                                          peaks["bfloat16"]))
                    feats = [sizes[v] for v in visits(level)]
                    t = pyramid_inputs(n, channels, hw, feats, device, dtype, offset_std)
                    fns = pyramid_fns(t, hw, feats)
                    byts = sum(v.numel() * v.element_size() for v in t.values()) + 3 * out_bytes
                    rows.append(_cuda_row("pyramid_deform_conv2d x3", f"N={n} base P{level + 3} {hw} from {feats} "
                                          f"{channels}->{channels} {dname} {offs}", "grid_sample reference", fns,
                                          list(t.values()), 3 * flops, byts, peaks[dname], reps,
                                          peaks["bfloat16"]))
                    if device == "cuda":
                        torch.cuda.empty_cache()
    return rows, peaks


def _cuda_row(op: str, shape: str, baseline: str, fns: dict, leaves: list, flops: float, byts: float,
              peak: dict, reps: int, bf16_peak: dict) -> dict:
    row: dict[str, Any] = {"op": op, "shape": shape, "baseline": baseline}
    for who, fn in fns.items():
        row[f"{who}_fwd_ms"], row[f"{who}_fwd_peak_mib"] = time_cuda(lambda fn=fn: fn().detach(), reps)
        row[f"{who}_fwd_bwd_ms"], row[f"{who}_fwd_bwd_peak_mib"] = time_cuda(fwd_bwd(fn, leaves), reps)
    row["speedup_fwd"] = row["baseline_fwd_ms"] / row["ours_fwd_ms"]
    row["speedup_fwd_bwd"] = row["baseline_fwd_bwd_ms"] / row["ours_fwd_bwd_ms"]
    if row["ours_fwd_bwd_peak_mib"] is not None:  # CUDA only
        row["mem_ratio_fwd_bwd"] = row["ours_fwd_bwd_peak_mib"] / max(row["baseline_fwd_bwd_peak_mib"], 1e-9)
    row["ours_fwd_tflops"] = flops / row["ours_fwd_ms"] / 1e9
    row["ours_fwd_frac_of_matmul"] = row["ours_fwd_tflops"] / peak["matmul_tflops"]
    row["ours_fwd_frac_of_bf16_matmul"] = row["ours_fwd_tflops"] / bf16_peak["matmul_tflops"]
    row["ours_fwd_min_gbs"] = byts / row["ours_fwd_ms"] / 1e6
    row["ours_fwd_frac_of_copy_bw"] = row["ours_fwd_min_gbs"] / peak["copy_gbs"]
    row["ours_fwd_bwd_tflops"] = 3 * flops / row["ours_fwd_bwd_ms"] / 1e9
    row["ours_fwd_bwd_frac_of_bf16_matmul"] = row["ours_fwd_bwd_tflops"] / bf16_peak["matmul_tflops"]
    return row


# ------------------------------------------------------------------------------------------------ output
def format_rows(env: dict, rows: list[dict], extra: dict | None) -> str:
    lines = [f"# {k}: {v}" for k, v in env.items()]
    if extra:
        lines += [f"# measured {k}: " + ", ".join(f"{kk}={vv:.1f}" for kk, vv in v.items()) for k, v in extra.items()]
    for row in rows:
        lines.append(f"{row['op']:26s} {row['shape']}  [baseline: {row['baseline']}]")
        keys = [k for k in row if k not in ("op", "shape", "baseline") and row[k] is not None]
        lines.append("    " + "  ".join(f"{k}={row[k]:.3g}" for k in keys))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (cpu mode)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default cpu 3, cuda 20)")
    parser.add_argument("--batches", default="2,8", help="cuda mode batch sizes")
    parser.add_argument("--dtypes", default="bfloat16,float32", help="cuda mode dtypes")
    parser.add_argument("--offset-stds", default="2,0", help="cuda mode offset std-devs in pixels (0: zero offsets)")
    parser.add_argument("--rows", default="issue9,demo", help="cpu mode row groups: issue9, demo")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks",
                        help="folder for ops_<mode>[_<rows>][_<n>threads].txt/.json")
    parser.add_argument("--dry-run", action="store_true",
                        help="cuda mode's rows on the CPU: Triton interpreter, 64x64 image, 16 channels, P3, fp32")
    args = parser.parse_args(argv)
    if args.dry_run:
        if args.mode != "cuda":
            parser.error("--dry-run applies to --mode cuda")
        if os.environ.get("TRITON_INTERPRET") != "1":
            parser.error("--dry-run needs TRITON_INTERPRET=1 before triton is imported (main(argv) was called)")
        os.environ["LSVR_BENCH_DRY_RUN"] = "1"
        torch.set_num_threads(1)
        env = environment("cuda-dry-run")
        rows, extra = run_cuda(args.reps or 1, [1], [torch.float32], device="cpu", image_hw=(64, 64), channels=16,
                               levels=1, offset_stds=(2.0,))
        text = format_rows(env, rows, extra)
        print(text, end="")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ops_cuda_dry_run.txt").write_text(text)
        (args.out / "ops_cuda_dry_run.json").write_text(json.dumps({"env": env, "device_peaks": extra, "rows": rows},
                                                                   indent=1) + "\n")
        return 0
    if args.mode == "cuda" and not torch.cuda.is_available():
        print("--mode cuda needs a CUDA GPU; use --mode cpu", file=sys.stderr)
        return 2
    extra = None
    if args.mode == "cpu":
        torch.set_num_threads(args.threads)
        env = environment("cpu")
        rows = run_cpu(args.reps or 3, tuple(args.rows.split(",")))
    else:
        env = environment("cuda")
        dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
        rows, extra = run_cuda(args.reps or 20, [int(b) for b in args.batches.split(",")], dtypes,
                               offset_stds=tuple(float(v) for v in args.offset_stds.split(",")))
    text = format_rows(env, rows, extra)
    print(text, end="")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"ops_{args.mode}"
    if args.mode == "cpu":  # non-default runs get their own files
        stem += "" if args.rows == "issue9,demo" else "_" + args.rows.replace(",", "_")
        stem += "" if args.threads == 2 else f"_{args.threads}threads"
    (args.out / f"{stem}.txt").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps({"env": env, "device_peaks": extra, "rows": rows},
                                                      indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
