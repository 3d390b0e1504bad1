"""CPU inference latency of the demo LSNet and MutualGuide models: eager, torch.compile, pt2 and onnxruntime.

    python tools/bench_infer.py [--threads 1] [--repeats 20] [--out benchmarks/infer_cpu]

Each model is built from its synthetic config with random weights (latency does not depend on the values),
exported with ``lsvr_core.export`` to pt2 and ONNX in a temporary folder, and timed on one preprocessed 128 px
synthetic image (batch 1) up to the raw head outputs (decoding and NMS are the same Python code for every
engine, so they are left out), and end to end (``decoded``: eager decoding vs the ``--postprocess`` ONNX graph,
which decodes with ONNX TopK and NonMaxSuppression). Times are the median of ``--repeats`` runs after 3
warm-ups. Prints the machine, versions, shapes, each engine's ms / image, images/s and the ratio to eager in the
same run, and writes them to ``OUT.txt`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

MODELS = {
    "lsnet_demo": ("lsnet:demo", []),
    "mutualguide_synthetic": ("mutualguide:coco_mini", [
        "data.train={type: synthetic, split: train, num_images: 8, image_size: 128}",
        "data.val={type: synthetic, split: val, num_images: 8, image_size: 128}", "model.num_classes=4"]),
}


def timed(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_model(name: str, ref: str, overrides: list[str], repeats: int, tmp: Path) -> list[dict]:
    from lsvr_core.config import config_to_yaml, load_config
    from lsvr_core.engine.build import build_model
    from lsvr_core.export.module import Postprocessed, RawOutputs
    from lsvr_core.export.runtime import ExportedDetector
    from lsvr_core.export.sidecar import write_sidecar
    from lsvr_core.export.writers import export_onnx, export_pt2
    from lsvr_core.plugins import get_plugin_manager

    manager = get_plugin_manager(reload=True)
    cfg = load_config(ref, manager, overrides)
    torch.manual_seed(0)
    module = RawOutputs(build_model(cfg, manager).eval()).eval()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        n_out = len(module(x))
    rows = []
    with torch.no_grad():
        rows.append(("raw", "eager", timed(lambda: module(x), repeats)))
        compiled = torch.compile(module)
        rows.append(("raw", "torch.compile", timed(lambda: compiled(x), repeats)))
    names = [f"output_{i}" for i in range(n_out)]
    for fmt, engine in (("pt2", "pt2"), ("onnx", "onnxruntime")):
        path = tmp / f"{name}.{fmt}"
        if fmt == "pt2":
            export_pt2(module, (x,), path, None)
        else:
            export_onnx(module, (x,), path, None, names)
        write_sidecar(path, cfg=cfg, config_yaml=config_to_yaml(cfg), image_size=(128, 128), output_names=names,
                      postprocess=False, class_names=None, fmt=fmt, opset=18 if fmt == "onnx" else None)
        runner = ExportedDetector(path, engine, manager)
        label = engine if engine != "pt2" else "pt2 (torch.export)"
        rows.append(("raw", label, timed(lambda r=runner: r.run_graph(x), repeats)))
    # end to end (decoding and NMS included): eager vs the --postprocess ONNX graph
    post = Postprocessed(module.detector).eval()
    inputs = (x, torch.tensor([128, 128]), torch.ones(2))
    post_names = post.probe(*inputs)
    with torch.no_grad():
        rows.append(("decoded", "eager", timed(lambda: post(*inputs), repeats)))
    path = tmp / f"{name}_post.onnx"
    export_onnx(post, inputs, path, None, post_names)
    write_sidecar(path, cfg=cfg, config_yaml=config_to_yaml(cfg), image_size=(128, 128), output_names=post_names,
                  postprocess=True, class_names=None, fmt="onnx", opset=18)
    runner = ExportedDetector(path, "onnxruntime", manager)
    rows.append(("decoded", "onnxruntime --postprocess",
                 timed(lambda r=runner: r.run_postprocessed(x, (128, 128), (1.0, 1.0)), repeats)))
    base = {scope: t for scope, engine, t in rows if engine == "eager"}
    return [{"model": name, "scope": scope, "engine": e, "ms": 1e3 * t, "images_per_s": 1 / t,
             "speedup_vs_eager": base[scope] / t} for scope, e, t in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "benchmarks" / "infer_cpu"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    lines = [f"machine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
             f"load={os.getloadavg()[0]:.1f}; torch threads {torch.get_num_threads()}",
             f"versions: python {platform.python_version()}, torch {torch.__version__}, "
             f"onnxruntime {onnxruntime.__version__}",
             "input: 1x3x128x128 float32 (one synthetic image); scope raw: up to the raw head outputs, decoded: "
             "detections (decoding and NMS included; ratio to eager of the same scope)"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            ref, overrides = MODELS[name]
            results += bench_model(name, ref, overrides, args.repeats, Path(tmp))
    lines.append(f"{'model':<24}{'scope':<9}{'engine':<27}{'ms / image':>12}{'images/s':>10}{'vs eager':>10}")
    for r in results:
        lines.append(f"{r['model']:<24}{r['scope']:<9}{r['engine']:<27}{r['ms']:>12.2f}{r['images_per_s']:>10.1f}"
                     f"{r['speedup_vs_eager']:>9.2f}x")
    text = "\n".join(lines)
    print(text)
    Path(args.out + ".txt").write_text(text + "\n")
    Path(args.out + ".json").write_text(json.dumps({"header": lines[:3], "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
