"""optim.auto_scale_lr (linear lr scaling to the actual total batch), the start line (lr, total batch,
precision) and the FPN's GroupNorm option for the extra levels."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lsvr_core.builtin.configs import FPNConfig
from lsvr_core.config.sections import OptimSection
from lsvr_core.contracts import ShapeSpec
from lsvr_core.engine.lr_scaling import effective_lr
from lsvr_core.errors import ConfigError
from lsvr_core.models.fpn import build_fpn

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def test_effective_lr_is_linear_in_the_total_batch():
    off = OptimSection(lr=0.01)
    assert effective_lr(off, 2, 8) == (0.01, "batch 2x8=16 | lr 0.01")
    on = OptimSection(lr=0.01, auto_scale_lr={"enabled": True, "base_batch_size": 16})
    lr, text = effective_lr(on, 2, 1)  # 2 images on one process: 0.01 * 2 / 16
    assert lr == pytest.approx(0.00125) and text == "batch 2x1=2 | lr 0.00125 (auto-scaled: 0.01 x 2/16)"
    assert effective_lr(on, 6, 8)[0] == pytest.approx(0.03)


def test_start_line_shows_scaled_lr_total_batch_and_precision(tmp_path):
    from lsvr_core.engine import distributed as D
    from lsvr_core.engine.trainer import Trainer
    from lsvr_core.engine.workdir import close_logging

    mgr = common.manager()
    cfg = common.config(mgr, tmp_path / "run", optim={"lr": 0.08, "auto_scale_lr": {"enabled": True,
                                                                                     "base_batch_size": 16}},
                        runtime={"precision": "fp32"}, schedule={"warmup_iters": 0})
    dist = D.DistInfo(rank=0, world_size=1, local_rank=0)
    trainer = Trainer(cfg, mgr, dist=dist, device=torch.device("cpu"), source="t")
    close_logging(trainer.log)
    line = (tmp_path / "run" / "log.txt").read_text().splitlines()[0]
    assert "| batch 4x1=4 | lr 0.02 (auto-scaled: 0.08 x 4/16) | precision fp32 |" in line
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.02)  # 0.08 * 4 / 16, no warm-up

    cfg = common.config(mgr, tmp_path / "run2", runtime={"precision": "auto"})
    close_logging(Trainer(cfg, mgr, dist=dist, device=torch.device("cpu"), source="t").log)
    line = (tmp_path / "run2" / "log.txt").read_text().splitlines()[0]
    assert "| batch 4x1=4 | lr 0.05 | precision fp32 (auto) |" in line


def test_fpn_extra_levels_with_group_norm():
    shape = {"c3": ShapeSpec(16, 8), "c4": ShapeSpec(32, 16), "c5": ShapeSpec(64, 32)}
    plain = build_fpn(FPNConfig(out_channels=64, norm="gn", extra_source="c5", extra_relu=False), shape)
    assert all(isinstance(c, torch.nn.Conv2d) and c.bias is not None for c in plain.fpn.extra_blocks.convs)
    neck = build_fpn(FPNConfig(out_channels=64, norm="gn", extra_source="c5", extra_relu=False, extra_norm=True),
                     shape)
    g = torch.Generator().manual_seed(0)
    feats = {k: torch.randn(2, s.channels, 64 // s.stride, 96 // s.stride, generator=g) for k, s in shape.items()}
    out = neck(feats)
    for i, name in enumerate(("p6", "p7")):
        conv, norm = neck.fpn.extra_blocks.convs[i]
        assert conv.bias is None and isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == 32
        src = feats["c5"] if i == 0 else out["p6"]
        expected = torch.nn.functional.group_norm(conv(src), 32, norm.weight, norm.bias)  # oracle: conv -> GN
        torch.testing.assert_close(out[name], expected)
        # GN output: every group of every image has mean 0 (affine = identity at init)
        groups = out[name].reshape(2, 32, -1)
        torch.testing.assert_close(groups.mean(-1), torch.zeros(2, 32), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="extra_norm=true needs model.neck.norm: gn"):
        build_fpn(FPNConfig(out_channels=64, extra_norm=True), shape)
