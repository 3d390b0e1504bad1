"""End to end through the engine: ``lsnet:demo`` shrunk to a few tiny images trains, evaluates with pycocotools,
writes metrics.jsonl and drawn predictions; the other tasks run one iteration on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lsvr_core.config import load_config
from lsvr_core.engine import api
from lsvr_core.plugins import get_plugin_manager

TINY = ["data.train.num_images=4", "data.val.num_images=2", "data.train.image_size=64", "data.val.image_size=64",
        "data.batch_size=2", "schedule.epochs=1", "schedule.warmup_iters=1", "model.neck.out_channels=32",
        "model.head.feat_channels=32", "model.head.norm_groups=8", "runtime.threads=1", "eval.num_draw=1",
        "logging.interval=1"]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    manager = get_plugin_manager()
    cfg = load_config("lsnet:demo", manager, [*TINY, f"runtime.work_dir={tmp_path}"])
    assert api.run(cfg, manager, source="lsnet:demo") == 0
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["iter"] == 2 and 0.0 <= record["bbox/AP"] <= 1.0
    assert list((tmp_path / "predictions").glob("*.png"))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segm", "pose_bbox", "pose_kbox"])
def test_other_tasks_train_and_evaluate_on_synthetic_data(tmp_path: Path, task: str) -> None:
    manager = get_plugin_manager()
    pose = task.startswith("pose")
    overrides = [*TINY, f"task={task}", f"runtime.work_dir={tmp_path}", "schedule.max_iters=1",
                 "model.num_classes=" + ("1" if pose else "4"), "eval.num_draw=0"]
    cfg = load_config("lsnet:demo", manager, overrides)
    assert api.run(cfg, manager, source="test") == 0
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    key = "keypoints/AP" if pose else "segm/AP"
    assert key in record
