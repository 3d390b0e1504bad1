"""End to end (slow): ``lsvr run lsvr:fcos_r50_coco_mini`` shrunk to ResNet-18, short side 256 and two
iterations on the real coco_mini data; the work dir holds every file and ``metrics.jsonl`` carries the COCO
``bbox/AP`` (pycocotools through lsvr-data's evaluator, on the first 4 val images)."""

from __future__ import annotations

import json

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
    for key in ("bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs", "bbox/AR100"):
        assert 0.0 <= record[key] <= 1.0
    ckpt = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["iter"] == 2 and ckpt["batch_in_epoch"] == 2
    assert len(list((work / "predictions").glob("*.png"))) == 2
    assert "| bbox" in (work / "log.txt").read_text()
