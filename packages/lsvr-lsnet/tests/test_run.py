"""End to end through the engine: ``lsnet:demo`` shrunk to a few tiny images trains (finite, decreasing losses),
evaluates with pycocotools (every COCO metric written to metrics.jsonl) and draws predictions; the other tasks
train a few iterations on synthetic data and report their metrics. How well LSNet learns is asserted by the
learning-floor tests (test_lsnet_learning_floor.py), not here: these schedules are too short for an AP floor."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from lsvr_core.api import RunInfo, hookimpl
from lsvr_core.config import load_config
from lsvr_core.engine import api
from lsvr_core.plugins import PluginManager

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


class LossRecorder:
    """Test plugin: keeps what the trainer logs through ``lsvr_log_metrics`` (every step at logging.interval=1)."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, dict[str, Any]]] = []

    @hookimpl
    def lsvr_log_metrics(self, run: RunInfo, step: int, metrics: dict[str, Any]) -> None:
        self.steps.append((step, dict(metrics)))


def manager_with_recorder() -> tuple[PluginManager, LossRecorder]:
    manager, recorder = PluginManager(), LossRecorder()
    manager.pm.register(recorder, name="test-loss-recorder")
    return manager, recorder

TINY = ["data.train.num_images=4", "data.val.num_images=2", "data.train.image_size=64", "data.val.image_size=64",
        "data.batch_size=2", "schedule.epochs=1", "schedule.warmup_iters=1", "model.neck.out_channels=32",
        "model.head.feat_channels=32", "model.head.norm_groups=8", "runtime.threads=1", "eval.num_draw=1",
        "logging.interval=1"]


@pytest.mark.slow  # 6 training steps and a pycocotools evaluation: about 10 CPU-s
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    manager, recorder = manager_with_recorder()
    cfg = load_config("lsnet:demo", manager, [*TINY, "schedule.epochs=3", "eval.interval=3",
                                              f"runtime.work_dir={tmp_path}"])
    assert api.run(cfg, manager, source="lsnet:demo") == 0
    # 4 images, batch 2, 3 epochs: 6 steps, each logging finite losses of the three LSNet branches
    assert [step for step, _ in recorder.steps] == [1, 2, 3, 4, 5, 6]
    for _, metrics in recorder.steps:
        losses = {k: v for k, v in metrics.items() if k.startswith("loss")}
        assert {"loss_cls", "loss_pts_init", "loss_pts_refine"} <= set(losses), losses
        assert all(math.isfinite(v) for v in losses.values()), losses
    totals = [sum(v for k, v in m.items() if k.startswith("loss_")) for _, m in recorder.steps]
    print("total loss per step", [round(t, 3) for t in totals])  # shown with -s
    assert min(totals[-2:]) < totals[0], totals  # training moves the same 4 images' loss down
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["iter"] == 6 and record["epoch"] == 3  # epochs completed
    for key in COCO_KEYS:  # every COCOeval stat, a float (-1 where no ground truth of that size exists)
        assert isinstance(record[f"bbox/{key}"], float) and -1.0 <= record[f"bbox/{key}"] <= 1.0, key
    assert len(list((tmp_path / "predictions").glob("*.png"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segm", "pose_bbox", "pose_kbox"])
def test_other_tasks_train_and_evaluate_on_synthetic_data(tmp_path: Path, task: str) -> None:
    manager, recorder = manager_with_recorder()
    pose = task.startswith("pose")
    # the synthetic set keeps its 4 shape classes for every task (validate checks num_classes against it)
    overrides = [*TINY, f"task={task}", f"runtime.work_dir={tmp_path}", "schedule.max_iters=2",
                 "model.num_classes=4", "eval.num_draw=0"]
    cfg = load_config("lsnet:demo", manager, overrides)
    assert api.run(cfg, manager, source="test") == 0
    assert [step for step, _ in recorder.steps] == [1, 2]
    for _, metrics in recorder.steps:
        losses = {k: v for k, v in metrics.items() if k.startswith("loss")}
        assert "loss_cls" in losses and all(math.isfinite(v) for v in losses.values()), losses
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["iter"] == 2
    expected = [f"keypoints/{k}" for k in KEYPOINT_KEYS] if pose else [f"segm/{k}" for k in COCO_KEYS]
    for key in [*(f"bbox/{k}" for k in COCO_KEYS), *expected]:  # bbox is always scored, then the task's type
        assert isinstance(record[key], float) and -1.0 <= record[key] <= 1.0, key
