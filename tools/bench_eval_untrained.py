"""Time the evaluation of untrained models on coco_mini val2017 (issue 19: goal <= 30 s per task on 2 cores).

    python tools/bench_eval_untrained.py [--recipes lsnet:coco_mini_bbox,...] [--iters 1]

Runs each recipe as a user would (``lsvr run RECIPE -o schedule.max_iters=N``: N training steps from the
recipe's random init, then one evaluation of the 79 val images) and reads the evaluation time the run prints
(``evaluation at iteration N (79 images, T s)``: prediction, post-processing, results conversion and COCOeval).
Prints the machine, versions, the time per recipe and the images/s; writes ``benchmarks/eval_untrained.txt``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = "lsnet:coco_mini_bbox,lsnet:coco_mini_segm,lsnet:coco_mini_pose,mutualguide:coco_mini"
PATTERN = re.compile(r"evaluation at iteration \d+ \((\d+) images, ([\d.]+) s\)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=RECIPES)
    ap.add_argument("--iters", type=int, default=1, help="training steps before the evaluation")
    ap.add_argument("--goal", type=float, default=30.0, help="seconds")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "eval_untrained.txt"))
    args = ap.parse_args()
    lsvr = Path(sys.executable).with_name("lsvr")
    versions = ", ".join(f"{p}={md.version(p)}" for p in ("torch", "hotcoco", "pycocotools"))
    lines = [f"machine: {platform.machine()} cores={os.cpu_count()} load={os.getloadavg()[0]:.1f} "
             f"python={platform.python_version()}", f"versions: {versions}",
             f"each: lsvr run RECIPE -o schedule.max_iters={args.iters} (untrained), evaluation of coco_mini val2017",
             f"{'recipe':<28}{'images':>8}{'eval s':>9}{'img/s':>8}{'run s':>8}  goal <= {args.goal:.0f} s"]
    print("\n".join(lines), flush=True)
    failed = False
    for recipe in args.recipes.split(","):
        with tempfile.TemporaryDirectory() as work:
            t0 = time.perf_counter()
            proc = subprocess.run([str(lsvr), "run", recipe, "-o", f"schedule.max_iters={args.iters}",
                                   "-o", f"runtime.work_dir={work}/run"], capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - t0
        match = PATTERN.search(proc.stdout + proc.stderr)
        if proc.returncode or not match:
            lines.append(f"{recipe:<28} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-300:]}")
            failed = True
        else:
            n, secs = int(match.group(1)), float(match.group(2))
            ok = "ok" if secs <= args.goal else "OVER"
            lines.append(f"{recipe:<28}{n:>8}{secs:>9.1f}{n / secs:>8.1f}{wall:>8.1f}  {ok}")
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
