"""Engine building blocks against hand-computed values: atomic checkpoints, RNG states, LR schedule,
parameter groups, grouped/sharded batch sampling, per-sample seeding, the metrics table."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from lsvr_core.config.sections import OptimSection, ScheduleSection
from lsvr_core.engine import checkpoint as C
from lsvr_core.engine.data import GroupedBatchSampler, SeededDataset
from lsvr_core.engine.optim import build_optimizer, param_groups
from lsvr_core.engine.progress import metrics_table
from lsvr_core.engine.schedule import lr_factor


def test_atomic_save_keeps_previous_file_when_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    C.save_atomic({"iter": 1, "w": torch.arange(4.0)}, path)

    def broken_save(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a zip")  # a partial write, then the disk "fills up"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        C.save_atomic({"iter": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # temporary removed
    got = torch.load(path, weights_only=True)
    assert got["iter"] == 1 and torch.equal(got["w"], torch.arange(4.0))


def test_atomic_save_replaces_on_success(tmp_path):
    path = tmp_path / "last.pt"
    C.save_atomic({"iter": 1}, path)
    C.save_atomic({"iter": 2}, path)
    assert torch.load(path, weights_only=True)["iter"] == 2


def test_unreadable_checkpoint_names_the_file(tmp_path):
    from lsvr_core.errors import LsvrError

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(LsvrError, match="cannot read checkpoint .*bad.pt"):
        C.load(bad)


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    C.save_atomic({"rng": C.rng_state()}, tmp_path / "r.pt")
    want = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    C.set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[2] == want[2]
    assert got[3] == want[3]


def test_lr_factor_warmup_step_and_cosine():
    step = ScheduleSection(epochs=3, policy="step", milestones=[1, 2], gamma=0.1, warmup_iters=4, warmup_ratio=0.2)
    f = lr_factor(step, iters_per_epoch=10, total_iters=30)
    # warm-up: 0.2 + 0.8 * it / 4
    assert [round(f(i), 6) for i in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert f(9) == 1.0 and f(10) == pytest.approx(0.1) and f(19) == pytest.approx(0.1) and f(20) == pytest.approx(0.01)
    cos = ScheduleSection(epochs=2, policy="cosine", milestones=[], warmup_iters=0, min_lr_ratio=0.1)
    g = lr_factor(cos, iters_per_epoch=5, total_iters=10)
    assert g(0) == 1.0 and g(5) == pytest.approx(0.55) and g(10) == pytest.approx(0.1)
    assert g(3) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.3)))


def test_param_groups_no_decay_on_norm_and_bias():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    model[2].weight.requires_grad_(False)
    groups = param_groups(model, 0.05, no_decay_norm_bias=True)
    assert [len(g["params"]) for g in groups] == [1, 4] and [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert groups[0]["params"][0] is model[0].weight
    opt = build_optimizer(model, OptimSection(type="adamw", lr=0.002, weight_decay=0.05, no_decay_norm_bias=False))
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 5


def test_grouped_sampler_groups_shards_and_resumes():
    ars = [1.5 if i % 3 else 0.7 for i in range(22)]  # 7 portrait, 15 landscape
    one = GroupedBatchSampler(ars, 4, seed=5)
    batches = list(one)
    assert len(batches) == one.batches_per_epoch() == 6  # ceil(22 / 4)
    assert all(len(b) == 4 for b in batches)
    assert set(i for b in batches for i in b) == set(range(22))  # every image seen
    pure = [b for b in batches if len({ars[i] >= 1 for i in b}) == 1]
    assert len(pure) >= 4  # only the leftover batches mix orientations
    # two ranks with batch 2: rank r gets the r-th half of each global batch of 4
    ranks = [list(GroupedBatchSampler(ars, 2, rank=r, world_size=2, seed=5)) for r in range(2)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == batches
    # another epoch -> another order; resuming skips the first batches
    one.set_epoch(1)
    assert list(one) != batches
    one.set_epoch(0, start=4)
    assert list(one) == batches[4:] and len(one) == 2


class _RandomItems:
    classes = ["a"]

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.rand(()).item(), np.random.rand(), random.random()

    def aspect_ratios(self):
        return [1.0] * 5


def test_seeded_dataset_items_depend_on_seed_epoch_index_only():
    ds = SeededDataset(_RandomItems(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = [ds[i] for i in range(5)]
    assert torch.equal(torch.get_rng_state(), before)  # caller's RNG untouched
    torch.manual_seed(123)
    assert [ds[i] for i in reversed(range(5))][::-1] == first  # order and outer RNG do not matter
    ds.set_epoch(1)
    assert ds[0] != first[0]
    assert ds.classes == ["a"] and ds.aspect_ratios() == [1.0] * 5


def test_metrics_table_groups_by_iou_type():
    table = metrics_table({"bbox/AP": 0.4123, "bbox/AP50": 0.6, "segm/AP": 0.3})
    lines = table.splitlines()
    assert lines[0].split("|")[2:4] == ["   AP ", " AP50 "]
    assert "| bbox   | 41.2 | 60.0 |" in table and "| segm   | 30.0 |" in table


def test_progress_bar_hides_plain_lines_on_the_terminal_but_not_in_the_log_file(tmp_path, capsys):
    from lsvr_core.engine.progress import Progress
    from lsvr_core.engine.workdir import close_logging, setup_logging

    log, drop = setup_logging(tmp_path / "log.txt", is_main=True)
    try:
        for use_bar in (True, False):
            p = Progress(log, drop, interval=2, total_iters=4, use_bar=use_bar)
            p.start_epoch(0, 1, 4, 0, 0)
            for it in range(1, 5):
                p.update(it, it, {"loss": 1.0 / it, "loss_cls": 0.5}, 0.01)
            p.end_epoch()
            err = capsys.readouterr().err
            assert ("iter 2/4 (total 2/4) loss 0.7500 loss_cls 0.5000" in err) is not use_bar  # mean of 1, 1/2
            assert ("4/4" in err and "epoch 1/1" in err)  # the bar (or the plain line) reached the end
    finally:
        close_logging(log)
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert sum("iter 4/4 (total 4/4) loss 0.2917" in line for line in lines) == 2  # mean of 1/3 and 1/4


def test_eval_progress_lines_report_rate_and_eta(caplog):
    import logging

    from lsvr_core.engine.progress import EvalProgress

    log = logging.getLogger("lsvr.test.evalprogress")
    with caplog.at_level(logging.INFO, logger=log.name):
        p = EvalProgress(log, 10, every_s=0.0, use_bar=False)
        p.update(4)
        p.update(6)
        p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("evaluating: 4/10 images, ") and "img/s, eta " in lines[0]
    assert lines[-1].startswith("evaluating: 10/10 images, ") and lines[-1].endswith("eta 0:00:00")
    quiet = EvalProgress(log, 10, enabled=False)
    quiet.update(10)
    quiet.close()
    assert len(caplog.records) == len(lines)


def test_metrics_table_puts_per_class_ap_in_its_own_grid():
    from lsvr_core.engine.progress import metrics_table

    text = metrics_table({"bbox/AP": 0.5, "bbox/AP_person": 0.25, "bbox/AP_dog": -1.0, "bbox/AP_cat": 0.125},
                         per_class_columns=2)
    lines = text.splitlines()
    assert lines[:3] == ["| type   |   AP |", "|--------|------|", "| bbox   | 50.0 |"]
    assert lines[3] == "per-class bbox AP:"
    assert lines[4] == "| person  25.0 | dog       -1 |" and lines[5] == "| cat     12.5 |"
