"""Two CPU processes (gloo, ``--nproc-per-node 2``) with batch 2 each train like one process with batch 4:
the same per-iteration losses within float tolerance, and the evaluation gathers every val image."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


@pytest.mark.slow  # starts two more interpreters (about 10 s on 2 cores)
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    from lsvr_core.engine import api

    mgr = common.manager()
    # val batch 1: padding to a common batch size must not differ between 1 and 2 processes
    over = {"schedule": {"epochs": 2}, "eval": {"num_draw": 1}, "data": {"val_batch_size": 1}}
    one = tmp_path / "one"
    assert api.run(common.config(mgr, one, **over), mgr) == 0
    two = tmp_path / "two"
    cfg2 = common.config(mgr, two, **common.merge(over, {"data": {"batch_size": 2}}))
    assert api.run(cfg2, mgr, nproc_per_node=2, plugin_files=[str(common.PLUGIN)]) == 0

    a, b = common.losses(one), common.losses(two)
    # 16 images, global batch 4, 2 epochs: 8 logged steps in both runs (a short log must fail, not truncate)
    assert [r["step"] for r in a] == list(range(1, 9))
    assert [r["step"] for r in b] == list(range(1, 9))
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "loss_cls", "loss_box", "lr"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), (ra["step"], key)
    ma = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert [m["bbox/num_images"] for m in ma] == [6.0, 6.0]
    assert [m["bbox/num_images"] for m in mb] == [6.0, 6.0]  # both ranks' predictions were gathered
    for x, y in zip(ma, mb, strict=True):
        assert y["bbox/mIoU"] == pytest.approx(x["bbox/mIoU"], rel=1e-4, abs=1e-6)
    wa = torch.load(one / "checkpoints" / "last.pt", weights_only=True)["model"]
    wb = torch.load(two / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)
    assert not list(two.glob("launch_*.yaml"))  # the launcher's temporary config is removed
