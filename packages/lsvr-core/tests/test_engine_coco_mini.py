"""End to end (slow): ``lsvr run lsvr:fcos_r50_coco_mini`` shrunk to ResNet-18, short side 256 and two
iterations on the real coco_mini data; the work dir holds every file, the log shows finite losses at both steps,
and ``metrics.jsonl`` carries every COCO bbox metric (pycocotools through lsvr-data's evaluator, on the first 4
val images). Two iterations cannot teach a detector anything: how well FCOS learns is asserted by the
learning-floor test (test_fcos_learning_floor.py)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from lsvr_core.errors import PluginError
from lsvr_core.plugins import get_plugin_manager


def _have(kind: str, name: str) -> bool:
    try:
        get_plugin_manager().get(kind, name)
        return True
    except PluginError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not (_have("dataset", "coco") and _have("evaluator", "coco")),
                    reason="needs lsvr-data's 'coco' dataset and evaluator (lsvr-data not installed)")
def test_lsvr_run_fcos_on_coco_mini(coco_mini, tmp_path, capsys):
    from lsvr_core.cli.main import main

    work = tmp_path / "work"
    overrides = [
        f"data.root={coco_mini}", f"runtime.work_dir={work}", "runtime.threads=2", "data.num_workers=0",
        "model.backbone.depth=18", "model.neck.out_channels=64", "model.head.num_convs=2",
        "data.train.pipeline.scale=[427,256]", "data.val.pipeline.scale=[427,256]",
        "schedule.max_iters=2", "schedule.warmup_iters=1", "eval.max_images=4", "eval.num_draw=2",
        "logging.interval=1",
    ]
    argv = ["run", "lsvr:fcos_r50_coco_mini"] + [arg for o in overrides for arg in ("-o", o)]
    assert main(argv) == 0, capsys.readouterr().err
    assert (work / "config.resolved.yaml").is_file() and (work / "log.txt").stat().st_size > 0
    plugins = json.loads((work / "plugins.json").read_text())
    assert "lsvr-core" in plugins and "lsvr-data" in plugins
    (record,) = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert record["iter"] == 2 and record["epoch"] == 0  # 2 of the 40 iterations of epoch 1
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"):
        value = record[f"bbox/{key}"]  # -1 where COCOeval has no ground truth of that size
        assert isinstance(value, float) and (value == -1.0 or 0.0 <= value <= 1.0), (key, value)
    ckpt = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["iter"] == 2 and ckpt["batch_in_epoch"] == 2
    # one gallery per evaluation, with eval.num_draw = 2 rows of ground truth | predictions
    assert [p.name for p in (work / "predictions").glob("*.png")] == ["gallery_iter_2.png"]
    assert (work / "curves.png").is_file()
    log = (work / "log.txt").read_text()
    assert "| bbox" in log and "evaluation at iteration 2 (4 images" in log
    steps = re.findall(r"\(total (\d+)/2\) ((?:loss\w* \S+ )+)lr", log)  # logging.interval=1: one line per step
    assert [int(step) for step, _ in steps] == [1, 2], log[-3000:]
    for _, text in steps:
        losses = dict(zip(text.split()[::2], map(float, text.split()[1::2]), strict=True))
        assert {"loss", "loss_cls", "loss_box", "loss_ctr"} <= set(losses), losses
        assert all(math.isfinite(v) for v in losses.values()), losses
