"""``lsvr run mutualguide:voc_sample`` / ``coco_mini`` and the RFB, MixUp and v2 (EMA) smoke recipes train and
evaluate on the real data (capped to a few iterations and images): finite losses at both steps, the evaluation
of the 8 capped images, every VOC / COCO metric in ``metrics.jsonl``, a checkpoint. Two iterations teach
nothing: how well MutualGuide learns is asserted by the learning-floor test
(test_mutualguide_learning_floor.py)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
COCO_KEYS = {f"bbox/{k}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
                                    "ARl")}
VOC_KEYS = {"voc/mAP50", "voc/mAP75", "voc/mAP"}


@pytest.mark.slow
@pytest.mark.parametrize("recipe,keys", [("voc_sample", VOC_KEYS), ("coco_mini", COCO_KEYS),
                                         ("voc_sample_rfb", VOC_KEYS), ("voc_sample_mixup", VOC_KEYS),
                                         ("coco_mini_v2", COCO_KEYS)])
def test_recipe_trains_and_evaluates(recipe: str, keys: set[str], request: pytest.FixtureRequest,
                                     tmp_path: Path) -> None:
    data_root = request.getfixturevalue("voc_sample" if recipe.startswith("voc_sample") else "coco_mini")
    cmd = [sys.executable, "-m", "lsvr_core.cli.main", "run", f"mutualguide:{recipe}",
           "-o", f"data.root={data_root}", "-o", f"runtime.work_dir={tmp_path}", "-o", "runtime.threads=1",
           "-o", "runtime.device=cpu", "-o", "schedule.epochs=1", "-o", "schedule.max_iters=2",
           "-o", "data.batch_size=2", "-o", "data.val_batch_size=4", "-o", "eval.max_images=8",
           "-o", "eval.num_draw=1", "-o", "logging.interval=1"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(records) == 1 and records[0]["iter"] == 2 and keys <= set(records[0]), records
    for key in keys:  # COCOeval writes -1 for a size range without ground truth
        value = records[0][key]
        assert isinstance(value, float) and (value == -1.0 or 0.0 <= value <= 1.0), (key, value)
    log = (tmp_path / "log.txt").read_text()
    assert "evaluation at iteration 2 (8 images" in log, log[-3000:]
    steps = re.findall(r"\(total (\d+)/2\) ((?:loss\w* \S+ )+)lr", log)  # logging.interval=1: one line per step
    assert [int(step) for step, _ in steps] == [1, 2], log[-3000:]
    for _, text in steps:
        losses = dict(zip(text.split()[::2], map(float, text.split()[1::2]), strict=True))
        assert {"loss", "loss_cls", "loss_bbox"} <= set(losses), losses
        assert all(math.isfinite(v) for v in losses.values()), losses
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
