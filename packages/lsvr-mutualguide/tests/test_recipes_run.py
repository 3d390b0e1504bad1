"""``lsvr run mutualguide:voc_sample`` / ``coco_mini`` and the RFB, MixUp and v2 (EMA) smoke recipes train and
evaluate on the real data (capped to a few iterations and images) and report the VOC / COCO metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.parametrize("recipe,keys", [("voc_sample", {"voc/mAP50", "voc/mAP"}),
                                         ("coco_mini", {"bbox/AP", "bbox/AP50"}),
                                         ("voc_sample_rfb", {"voc/mAP50", "voc/mAP"}),
                                         ("voc_sample_mixup", {"voc/mAP50", "voc/mAP"}),
                                         ("coco_mini_v2", {"bbox/AP", "bbox/AP50"})])
def test_recipe_trains_and_evaluates(recipe: str, keys: set[str], shared_data: Path, tmp_path: Path) -> None:
    data_root = shared_data / ("voc2012_sample" if recipe.startswith("voc_sample") else "coco_mini")
    cmd = [sys.executable, "-m", "lsvr_core.cli.main", "run", f"mutualguide:{recipe}",
           "-o", f"data.root={data_root}", "-o", f"runtime.work_dir={tmp_path}", "-o", "runtime.threads=1",
           "-o", "runtime.device=cpu", "-o", "schedule.epochs=1", "-o", "schedule.max_iters=2",
           "-o", "data.batch_size=2", "-o", "data.val_batch_size=4", "-o", "eval.max_images=8",
           "-o", "eval.num_draw=1"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert records and keys <= set(records[-1]), records
    assert all(0.0 <= records[-1][k] <= 1.0 for k in keys)
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
