"""Benchmark the COCOeval backends at COCO-val scale (issue 19).

    python tools/bench_eval.py [--copies 64] [--iou-types bbox] [--backends pycocotools,faster_coco_eval,hotcoco]

The workload replicates coco_mini's 79 val2017 images (``../shared/data/coco_mini``) ``--copies`` times with new
image ids (64 copies: 5,056 images, 39,936 GT boxes), and derives imperfect detections from the ground truth
(jittered boxes, 20 % dropped, 75 false positives per image at low scores: about 410k detections at 64
copies, the detections-per-image of a real COCO-val evaluation).
Each backend loads the same GT dict and results list and runs evaluate/accumulate/summarize. Prints the
machine, versions, sizes, the time of each phase, the ratio to pycocotools, and whether the 12 stats agree
(max abs difference); writes the same to ``benchmarks/eval_backends.txt`` and ``.json``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata as md
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "lsvr-data" / "src"))

from lsvr_data import coco_backends  # noqa: E402


def workload(coco_mini: Path, copies: int, iou_type: str, fp_per_image: int, seed: int = 0) -> tuple[dict, list[dict]]:
    name = "person_keypoints_val2017.json" if iou_type == "keypoints" else "instances_val2017.json"
    base = json.loads((coco_mini / "annotations" / name).read_text())
    rng = random.Random(seed)
    images, anns, dets = [], [], []
    cats = [c["id"] for c in base["categories"]]
    for c in range(copies):
        off = (c + 1) * 1_000_000
        for img in base["images"]:
            images.append({**img, "id": img["id"] + off})
            for _ in range(fp_per_image):  # low-scoring false positives
                x, y = rng.uniform(0, img["width"] - 60), rng.uniform(0, img["height"] - 60)
                det = {"image_id": img["id"] + off, "category_id": rng.choice(cats), "score": rng.random() * 0.3,
                       "bbox": [x, y, rng.uniform(8, 60), rng.uniform(8, 60)]}
                if iou_type == "segm":
                    bx, by, bw, bh = det["bbox"]
                    det["segmentation"] = [[bx, by, bx + bw, by, bx + bw, by + bh, bx, by + bh]]
                if iou_type == "keypoints":
                    det["keypoints"] = [v for k in range(17) for v in (x + 2 * k, y + k, 1.0)]
                dets.append(det)
        for ann in base["annotations"]:
            new = {**ann, "id": ann["id"] + off, "image_id": ann["image_id"] + off}
            anns.append(new)
            if ann.get("iscrowd", 0) or rng.random() < 0.2:
                continue
            if iou_type == "keypoints" and ann.get("num_keypoints", 0) == 0:
                continue
            x, y, w, h = ann["bbox"]
            dx, dy = rng.uniform(-0.15, 0.15) * w, rng.uniform(-0.15, 0.15) * h
            det = {"image_id": new["image_id"], "category_id": ann["category_id"], "score": rng.random(),
                   "bbox": [x + dx, y + dy, w * rng.uniform(0.85, 1.15), h * rng.uniform(0.85, 1.15)]}
            if iou_type == "segm":
                det["segmentation"] = [[v + (dx if i % 2 == 0 else dy) for i, v in enumerate(p)]
                                       for p in ann["segmentation"]]
            if iou_type == "keypoints":
                det["keypoints"] = [v + rng.uniform(-4, 4) if i % 3 != 2 else 1.0
                                    for i, v in enumerate(ann["keypoints"])]
            dets.append(det)
    gt = {"images": images, "annotations": anns, "categories": base["categories"]}
    return gt, dets


def run_backend(backend: str, gt: dict, dets: list[dict], iou_type: str) -> dict:
    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)  # backends may edit their inputs; copies are not timed
    t0 = time.perf_counter()
    gt_obj = coco_backends.load_gt(gt, backend)
    t1 = time.perf_counter()
    stats, _ = coco_backends.evaluate(gt_obj, dets, iou_type, backend)
    t2 = time.perf_counter()
    return {"backend": backend, "load_s": t1 - t0, "evaluate_s": t2 - t1, "total_s": t2 - t0, "stats": stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "coco_mini"))
    ap.add_argument("--copies", type=int, default=64)
    ap.add_argument("--fp-per-image", type=int, default=75, help="low-scoring false positives per image")
    ap.add_argument("--iou-types", default="bbox")
    ap.add_argument("--backends", default=",".join(coco_backends.available_backends()))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "eval_backends"))
    args = ap.parse_args()
    backends = args.backends.split(",")
    lines = [f"machine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
             f"load={os.getloadavg()[0]:.1f} python={platform.python_version()}",
             "versions: " + ", ".join(f"{p}={md.version(p)}" for p in ("pycocotools", "faster-coco-eval", "hotcoco")
                                      if _installed(p))]
    report: dict = {"header": lines[:], "runs": []}
    for iou_type in args.iou_types.split(","):
        gt, dets = workload(Path(args.data), args.copies, iou_type, args.fp_per_image)
        lines.append(f"\n{iou_type}: {len(gt['images'])} images, {len(gt['annotations'])} GT annotations, "
                     f"{len(dets)} detections ({args.copies} copies of coco_mini val2017)")
        runs = [run_backend(b, gt, dets, iou_type) for b in backends]
        ref = next((r for r in runs if r["backend"] == "pycocotools"), runs[0])
        lines.append(f"{'backend':<18}{'load s':>9}{'evaluate s':>12}{'total s':>10}{'vs ' + ref['backend']:>18}"
                     f"{'max |stat diff|':>17}")
        for r in runs:
            diff = max(abs(a - b) for a, b in zip(r["stats"], ref["stats"], strict=True))
            r["ratio"] = ref["total_s"] / r["total_s"]
            r["max_stat_diff"] = diff
            lines.append(f"{r['backend']:<18}{r['load_s']:>9.2f}{r['evaluate_s']:>12.2f}{r['total_s']:>10.2f}"
                         f"{r['ratio']:>17.1f}x{diff:>17.1e}")
        lines.append("stats (" + ref["backend"] + "): " + ", ".join(f"{v:.4f}" for v in ref["stats"]))
        report["runs"].append({"iou_type": iou_type, "images": len(gt["images"]),
                               "gt": len(gt["annotations"]), "detections": len(dets), "results": runs})
    text = "\n".join(lines)
    print(text)
    Path(args.out + ".txt").write_text(text + "\n")
    Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")


def _installed(dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
