"""The built-in TensorBoard logger: the event file read back holds the training scalars, the evaluation
metrics and the drawn images of the run; off by default."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def test_tensorboard_event_file_holds_the_run(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from lsvr_core.engine import api

    mgr = common.manager()
    work = tmp_path / "run"
    cfg = common.config(mgr, work, schedule={"epochs": 1}, logging={"interval": 2, "tensorboard": True})
    assert api.run(cfg, mgr) == 0
    acc = event_accumulator.EventAccumulator(str(work / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    losses = {int(r["step"]): r for r in common.losses(work)}
    loss_events = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert sorted(loss_events) == [2, 4]  # logging.interval 2, 4 iterations
    for step, value in loss_events.items():
        assert value == pytest.approx(losses[step]["loss"], rel=1e-6)
    want = json.loads((work / "metrics.jsonl").read_text().splitlines()[-1])
    (ap_event,) = acc.Scalars("val/bbox/AP")
    assert ap_event.step == 4 and ap_event.value == pytest.approx(want["bbox/AP"], abs=1e-6)
    assert len(tags["images"]) >= 1  # the drawn predictions
    image = acc.Images(tags["images"][0])[0]
    assert image.width > 0 and image.height > 0


def test_tensorboard_is_off_by_default(tmp_path):
    from lsvr_core.engine import api

    mgr = common.manager()
    assert api.run(common.config(mgr, tmp_path / "run", schedule={"epochs": 1}), mgr) == 0
    assert not (tmp_path / "run" / "tensorboard").exists()
