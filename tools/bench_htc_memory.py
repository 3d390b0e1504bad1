"""Peak memory of one HTC + LESA-WRN50 training step (recipe ``lesa:htc_lesa_wrn50_1280_20e_coco``: DCN
c3-c5, LESA terms checkpointed, HTC with the semantic branch), batch 1 (the reference's per-GPU batch).

Each input side runs in a fresh child process (so one process's peak does not hide another's): the child
builds the recipe's model with ``max_input_size`` = the side, makes a synthetic 1-image batch (3 boxes with
masks, a semantic map), runs forward + backward + an SGD step and reports, on CPU, the process's peak
resident set size (``ru_maxrss``) before and after the step; on CUDA, ``torch.cuda.max_memory_allocated``.
The parent prints device, versions, shapes and a table, and writes ``benchmarks/htc_wrn50_memory_<device>.txt``.

Sides the machine cannot hold safely are not run: pass the sizes to run; :func:`estimate_1280` gives a
clearly labelled *estimate* for 1280 (the rest grows with H W, attention memory with (H W)^2 per LESA block).

Usage::

    python tools/bench_htc_memory.py --sizes 384 512 640          # CPU
    python tools/bench_htc_memory.py --device cuda --sizes 1280   # GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "lesa:htc_lesa_wrn50_1280_20e_coco"


def _child(side: int, device: str, threads: int) -> dict:
    import torch

    from lsvr_core.config import load_config
    from lsvr_core.engine.build import build_model
    from lsvr_core.plugins import get_plugin_manager
    from lsvr_core.structures import Batch, Targets

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    manager = get_plugin_manager()
    cfg = load_config(RECIPE, manager, [f"model.backbone.max_input_size={side}"])
    model = build_model(cfg, manager).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.8], [0.2, 0.5, 0.45, 0.95]]) * side
    masks = torch.zeros(3, side, side, dtype=torch.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
        masks[i, y0:y1, x0:x1] = 1
    target = Targets(boxes=boxes, labels=torch.tensor([0, 5, 17]), image_id=1, orig_size=(side, side),
                     image_size=(side, side), masks=masks,
                     semantic=torch.randint(0, 183, (side, side), dtype=torch.uint8))
    batch = Batch(images=torch.rand(1, 3, side, side) * 255, targets=[target])
    batch = Batch(images=batch.images.to(device), targets=[t.to(device) for t in batch.targets])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (ru_maxrss is KiB on Linux)
    start = time.perf_counter()
    losses = model(batch)
    sum(losses.values()).backward()
    optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {"side": side, "params_M": params / 1e6, "seconds": seconds, "rss_before_GiB": before,
           "rss_peak_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "losses": {k: float(v) for k, v in losses.items()}}
    if device == "cuda":
        out["cuda_peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def estimate_1280(points: list[tuple[int, float]], heads: int = 8, maps: int = 4) -> tuple[float, float, float]:
    """ESTIMATE of the peak at 1280: least-squares ``peak = a + b side^2`` over the measured sides (weights and
    activations that grow with the pixel count), plus the LESA attention maps the small sides cannot show: on
    CPU ``relpos_attention`` runs SDPA with the (L, L) bias materialised, so about ``maps`` fp32 tensors of
    G x L x L (bias, attention weights and their gradients) live at once in the largest checkpointed LESA
    block (WRN layer3 and layer4 block 0 attend at side / 16, L = (side / 16)^2; LESA spec §5).

    Returns:
        (a + b 1280^2, attention GiB, their sum) in GiB.
    """
    xs = [float(s) ** 2 for s, _ in points]
    ys = [m for _, m in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    dense = my + b * (1280.0**2 - mx)
    length = (1280 // 16) ** 2
    attention = maps * heads * length**2 * 4 / 2**30
    return dense, attention, dense + attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[384, 512, 640])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.device, args.threads)))
        return
    import torch
    import torchvision

    lines = [f"HTC + LESA-WRN50 (recipe {RECIPE}) one training step, batch 1, square input",
             f"device {args.device} ({platform.processor() or platform.machine()}, {args.threads} threads); "
             f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}",
             "side | params (M) | step s | peak RSS GiB | RSS before step GiB | step increment GiB"
             + (" | CUDA peak GiB" if args.device == "cuda" else "")]
    rows = []
    for side in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--child", str(side), "--device", args.device,
                               "--threads", str(args.threads)], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            lines.append(f"{side} | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        line = (f"{side} | {r['params_M']:.1f} | {r['seconds']:.1f} | {r['rss_peak_GiB']:.2f} | "
                f"{r['rss_before_GiB']:.2f} | {r['rss_peak_GiB'] - r['rss_before_GiB']:.2f}")
        if "cuda_peak_GiB" in r:
            line += f" | {r['cuda_peak_GiB']:.2f}"
        lines.append(line)
        print(line, flush=True)
    key = "cuda_peak_GiB" if args.device == "cuda" else "rss_peak_GiB"
    if len(rows) >= 2 and 1280 not in [r["side"] for r in rows]:
        dense, attention, total = estimate_1280([(r["side"], r[key]) for r in rows])
        lines.append(f"ESTIMATE for 1280 (not measured; see estimate_1280): {key} ~ {dense:.1f} GiB (a + b side^2 "
                     f"fitted on sides {[r['side'] for r in rows]}) + {attention:.1f} GiB (4 fp32 G x L x L "
                     f"attention maps, L = 80^2) = {total:.1f} GiB")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / f"htc_wrn50_memory_{args.device}.txt"
    out.write_text(text + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
