"""Res2Net v1d backbone: the lsvr-core backbone conformance suite, the published parameter count, the
Bottle2neck data flow against a hand-written forward, DCN placement, freezing and weight loading."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.errors import ConfigError
from lsvr_core.plugins import get_plugin_manager
from lsvr_core.testing import check_backbone
from lsvr_lsnet.backbones.res2net import Bottle2neck, build_res2net
from lsvr_lsnet.config import Res2NetConfig
from lsvr_ops_triton import ModulatedDeformConv2d


def test_res2net_conformance_with_dcn() -> None:
    # a narrow Res2Net-50 (8 channels per split) keeps the suite fast; the layout is that of 26w x 4s
    cfg = Res2NetConfig(depth=50, base_width=8, dcn_stages=(False, True, True, True), frozen_stages=1, norm_eval=True)
    model = check_backbone(get_plugin_manager().get("backbone", "res2net"), cfg, image_size=(64, 96),
                           batch_size=1)
    assert {k: (s.channels, s.stride) for k, s in model.output_shape().items()} == {
        "c3": (512, 8), "c4": (1024, 16), "c5": (2048, 32)}


def test_res2net101_26w_4s_has_the_published_size_and_dcn_in_c3_c5() -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        plain = build_res2net(Res2NetConfig(depth=101))
        dcn = build_res2net(Res2NetConfig(depth=101, dcn_stages=(False, True, True, True)))
    # timm / mmdetection res2net101_v1d_26w_4s: 45.21 M parameters including the 2048 x 1000 classifier
    n = sum(p.numel() for p in plain.parameters()) + 2048 * 1000 + 1000
    assert abs(n - 45.21e6) < 0.02e6, n
    kinds = {name.split(".")[0]: type(m) for name, m in dcn.named_modules() if name.endswith("convs.0")}
    assert kinds == {"layer1": torch.nn.Conv2d, "layer2": ModulatedDeformConv2d, "layer3": ModulatedDeformConv2d,
                     "layer4": ModulatedDeformConv2d}
    # frozen_stages=1 (the default): stem and layer1 take no gradient
    assert not any(p.requires_grad for p in dcn.stem.parameters()) and not any(
        p.requires_grad for p in dcn.layer1.parameters())
    assert all(p.requires_grad for p in dcn.layer2.parameters())


def test_bottle2neck_matches_a_hand_written_forward() -> None:
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d
    for stage_block, stride in ((True, 2), (False, 1)):
        inplanes = 64 if stage_block else 256
        down = torch.nn.Sequential(torch.nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
                                   torch.nn.Conv2d(64, 256, 1, bias=False), norm(256)) if stage_block else None
        block = Bottle2neck(inplanes, 64, stride, down, stage_block, 4, 26, norm, False).eval()
        x = torch.randn(2, inplanes, 9, 11)
        relu = torch.relu
        with torch.no_grad():
            y = relu(block.bn1(block.conv1(x)))
            s = torch.split(y, 26, dim=1)
            y1 = relu(block.bns[0](block.convs[0](s[0])))
            y2 = relu(block.bns[1](block.convs[1](s[1] if stage_block else y1 + s[1])))
            y3 = relu(block.bns[2](block.convs[2](s[2] if stage_block else y2 + s[2])))
            y4 = torch.nn.functional.avg_pool2d(s[3], 3, stride, 1) if stage_block else s[3]
            expected = relu(block.bn3(block.conv3(torch.cat([y1, y2, y3, y4], 1))) + (down(x) if down else x))
            torch.testing.assert_close(block(x), expected)
        assert block(x).shape == (2, 256, 5 if stride == 2 else 9, 6 if stride == 2 else 11)


def test_res2net_loads_local_weights_by_name(tmp_path) -> None:
    cfg = Res2NetConfig(depth=50, base_width=4, scales=2, out_levels=("c2",), frozen_stages=-1)
    src = build_res2net(cfg)
    state = {f"backbone.{k}": v.clone() for k, v in src.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 2048)
    torch.save({"state_dict": state}, tmp_path / "r2.pth")
    dst = build_res2net(cfg.model_copy(update={"weights": str(tmp_path / "r2.pth")}))
    torch.testing.assert_close(dst.stem[0].weight, src.stem[0].weight)
    del state["backbone.layer1.0.conv3.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match=r"missing \['layer1.0.conv3.weight'\]"):
        build_res2net(cfg.model_copy(update={"weights": str(tmp_path / "bad.pth")}))
