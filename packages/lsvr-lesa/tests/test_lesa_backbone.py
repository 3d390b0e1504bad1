"""LESA-ResNet-50 / WRN-50-2 backbones: conformance, any input size, the reference's per-block layout
(LESA spec §2 table), frozen stages and BatchNorm, plugin registration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lsvr_core.testing import check_backbone
from lsvr_lesa.backbone import build_lesa_r50, build_lesa_wrn50
from lsvr_lesa.block import LESA
from lsvr_lesa.config import LESAR50Config, LESAWRN50Config

torch.set_num_threads(1)
SMALL = dict(width=16, max_input_size=256, attention_backend="torch")


def test_conformance_reduced_width() -> None:
    cfg = LESAR50Config(**SMALL, norm_eval=False, frozen_stages=-1)
    check_backbone("lsvr_lesa.backbone:build_lesa_r50", cfg, image_size=(96, 160))


@pytest.mark.parametrize("size", [(100, 150), (64, 224), (33, 65)])
def test_any_input_size_gives_ceil_strided_levels(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_lesa_r50(LESAR50Config(**SMALL)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    for level, spec in model.output_shape().items():
        assert out[level].shape == (1, spec.channels, -(-size[0] // spec.stride), -(-size[1] // spec.stride))


def _lesa_layout(model: nn.Module) -> list[tuple[int, int, int, int, int, int]]:
    """(stage, block, channels, table side, d_qk, d_v) of every LESA block."""
    rows = []
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            if isinstance(block.conv2, LESA):
                attn = block.conv2.binary
                rows.append((s + 1, b, attn.channels, (attn.rel_h.shape[0] + 1) // 2, attn.d_qk, attn.d_v))
    return rows


def test_lesa_r50_layout_matches_the_reference_table() -> None:
    model = build_lesa_r50(LESAR50Config(max_input_size=1024))
    assert _lesa_layout(model) == [(3, b, 256, 64, 16, 32) for b in range(1, 6)] + [
        (4, 0, 512, 64, 32, 64), (4, 1, 512, 32, 32, 64), (4, 2, 512, 32, 32, 64)]
    assert model.stages[3][0].conv2.stride == 2
    from lsvr_ops_triton import DeformConv2d

    dcn = [(s + 1, b) for s, st in enumerate(model.stages) for b, blk in enumerate(st)
           if isinstance(blk.conv2, DeformConv2d)]
    assert dcn == [(2, b) for b in range(4)] + [(3, 0)]
    assert all(isinstance(blk.conv2.unary.conv, DeformConv2d) for st in model.stages for blk in st
               if isinstance(blk.conv2, LESA))
    assert {k: v.channels for k, v in model.output_shape().items()} == {"c2": 256, "c3": 512, "c4": 1024,
                                                                         "c5": 2048}


def test_lesa_wrn50_layout_matches_the_reference_table() -> None:
    model = build_lesa_wrn50(LESAWRN50Config())
    assert _lesa_layout(model) == [(3, b, 512, 80, 32, 64) for b in range(1, 6)] + [
        (4, 0, 1024, 80, 64, 128), (4, 1, 1024, 40, 64, 128), (4, 2, 1024, 40, 64, 128)]
    assert model.output_shape()["c5"].channels == 2048


def test_frozen_stages_and_norm_eval_cover_lesa_norms() -> None:
    model = build_lesa_r50(LESAR50Config(**SMALL, frozen_stages=1, norm_eval=True)).train()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert any(isinstance(m, nn.BatchNorm1d) for m in norms)
    assert all(not m.training for m in norms)
    assert not any(p.requires_grad for p in [*model.stem.parameters(), *model.stages[0].parameters()])
    assert all(p.requires_grad for p in model.stages[1].parameters())
    before = model.stages[2][1].conv2.binary.bn_similarity.running_var.clone()
    model(torch.randn(1, 3, 64, 96)).values()
    assert torch.equal(before, model.stages[2][1].conv2.binary.bn_similarity.running_var)
    model = build_lesa_r50(LESAR50Config(**SMALL, norm_eval=False)).train()
    assert model.stages[2][1].conv2.binary.bn_qkv.training
    from torchvision.ops import FrozenBatchNorm2d

    model = build_lesa_r50(LESAR50Config(**SMALL, norm="frozen_bn"))
    assert isinstance(model.stem[1], FrozenBatchNorm2d) and isinstance(model.stages[2][3].bn1, FrozenBatchNorm2d)


def test_wider_feature_map_than_max_input_size_raises() -> None:
    model = build_lesa_r50(LESAR50Config(width=16, max_input_size=64, attention_backend="torch")).eval()
    with pytest.raises(ValueError, match="max size"):
        model(torch.randn(1, 3, 64, 128))


def test_plugin_registers_both_backbones() -> None:
    from lsvr_core.plugins import get_plugin_manager

    manager = get_plugin_manager()
    assert manager.get("backbone", "lesa_r50").factory == "lsvr_lesa.backbone:build_lesa_r50"
    model = manager.build("backbone", LESAWRN50Config(**SMALL))
    assert model.stages[0][0].conv2.out_channels == 2 * 16


def test_zero_init_residual_makes_every_block_its_shortcut() -> None:
    """Reference default (mmdet ResNet ``zero_init_residual=True``): every bn3 weight starts at 0, so each
    block outputs relu(shortcut(x)); switched off, the residual branch contributes."""
    model = build_lesa_r50(LESAR50Config(**SMALL))
    blocks = [blk for stage in model.stages for blk in stage]
    assert all(torch.count_nonzero(blk.bn3.weight) == 0 for blk in blocks)
    block = model.stages[2][1].eval()  # a LESA block with an identity shortcut
    x = torch.randn(1, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), x.relu())
    off = build_lesa_r50(LESAR50Config(**SMALL, zero_init_residual=False))
    assert all(torch.equal(blk.bn3.weight, torch.ones_like(blk.bn3.weight)) for st in off.stages for blk in st)
    with torch.no_grad():
        assert not torch.equal(off.stages[2][1].eval()(x), x.relu())
